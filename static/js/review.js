// Review screen: heatmap opacity slider and region-of-interest toggle.
// Everything else on the page works without JavaScript, the ROI toggle included (CSS :checked);
// this file adds the opacity slider and keeps the ROI box in sync with its checkbox.
// Handlers are delegated from the document, so they keep working when live.js swaps in a fresh
// #study-result after the AI read finishes.
(function () {
  "use strict";
  document.documentElement.classList.add("has-js"); // shows the .js-only controls

  function applyOpacity(slider) {
    var overlay = document.getElementById("overlay-img");
    var output = document.getElementById("overlay-opacity-value");
    var value = Math.max(0, Math.min(100, parseInt(slider.value, 10) || 0));
    if (overlay) { overlay.style.opacity = String(value / 100); }
    if (output) { output.textContent = value + "%"; }
  }

  function syncRoi(toggle) {
    var box = document.getElementById("roi-box");
    if (box) { box.hidden = !toggle.checked; }
  }

  document.addEventListener("input", function (event) {
    if (event.target && event.target.id === "overlay-opacity") { applyOpacity(event.target); }
  });
  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "roi-toggle") { syncRoi(event.target); }
  });

  var slider = document.getElementById("overlay-opacity");
  if (slider) { applyOpacity(slider); }
  var toggle = document.getElementById("roi-toggle");
  if (toggle) { syncRoi(toggle); }
})();
