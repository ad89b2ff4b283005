// VaultMesh "Add node" page: a copy button for the install line (the page works without it;
// the line is selectable text). No HTML is built here.
"use strict";

(function () {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const target = document.getElementById(button.dataset.copy);
    if (!target || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(target.textContent);
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Copy failed: select the line";
      }
    });
  }
})();
