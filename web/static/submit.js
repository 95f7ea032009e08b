// The submit form: a preview of the chosen image, video or recording before it is sent, and only the
// chosen task's own options shown.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("image");
    const previews = {
      image: document.getElementById("preview"),
      video: document.getElementById("preview-video"),
      audio: document.getElementById("preview-audio"),
    };
    let url = null;
    input.addEventListener("change", () => {
      if (url) URL.revokeObjectURL(url);
      Object.values(previews).forEach((p) => { p.hidden = true; p.removeAttribute("src"); });
      const file = input.files[0];
      if (!file) return;
      url = URL.createObjectURL(file);
      const kind = file.type.split("/")[0];
      const preview = previews[kind] || previews.image;
      preview.src = url;
      preview.hidden = false;
    });
    const task = document.getElementById("task");
    const showOptions = () => {
      document.querySelectorAll(".task-options").forEach((group) => {
        group.hidden = !group.dataset.task.split(" ").includes(task.value);
      });
      // The options fieldset only when the task has options of its own.
      const options = document.getElementById("task-options");
      options.hidden = !options.querySelector(".task-options:not([hidden])");
    };
    task.addEventListener("change", showOptions);
    showOptions();
  });
})();
