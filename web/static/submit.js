// The submit form: a preview of the chosen image or video before it is sent, and only the
// chosen task's own options shown.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("image");
    const previews = { image: document.getElementById("preview"), video: document.getElementById("preview-video") };
    let url = null;
    input.addEventListener("change", () => {
      if (url) URL.revokeObjectURL(url);
      Object.values(previews).forEach((p) => { p.hidden = true; p.removeAttribute("src"); });
      const file = input.files[0];
      if (!file) return;
      url = URL.createObjectURL(file);
      const preview = file.type.startsWith("video/") ? previews.video : previews.image;
      preview.src = url;
      preview.hidden = false;
    });
    const task = document.getElementById("task");
    const showOptions = () => {
      document.querySelectorAll(".task-options").forEach((group) => {
        group.hidden = group.dataset.task !== task.value;
      });
    };
    task.addEventListener("change", showOptions);
    showOptions();
  });
})();
