// The submit form: a preview of the chosen image before it is sent.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("image");
    const preview = document.getElementById("preview");
    let url = null;
    input.addEventListener("change", () => {
      if (url) URL.revokeObjectURL(url);
      const file = input.files[0];
      if (!file) { preview.hidden = true; return; }
      url = URL.createObjectURL(file);
      preview.src = url;
      preview.hidden = false;
    });
  });
})();
