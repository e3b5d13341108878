/* Errors where the eye is: after a failed submit, focus the error summary at the top of the
 * page (templates/_error_summary.html); its links move focus to their field, not just the view.
 * Included by base.html on every page. */
(function () {
  "use strict";

  function focusSummary(summary) {
    summary.focus();
    summary.scrollIntoView({ block: "start" });
  }

  var summary = document.querySelector("[data-error-summary]");
  var heading = document.querySelector("[data-autofocus]");
  if (summary) {
    focusSummary(summary);
  } else if (heading) {
    heading.focus(); // a page that asks one question (confirm signing) starts there
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-error-target]");
    if (!link) {
      return;
    }
    var field = document.getElementById(link.getAttribute("data-error-target"));
    if (!field) {
      return;
    }
    event.preventDefault();
    var label = document.querySelector('label[for="' + field.id + '"]');
    (label || field).scrollIntoView({ block: "center" });
    field.focus({ preventScroll: true });
  });

  // Pages that build their summary in script (the upload page) ask for the same focus.
  document.addEventListener("imagemedix:errors", function () {
    var fresh = document.querySelector("[data-error-summary]");
    if (fresh) {
      focusSummary(fresh);
    }
  });
})();
