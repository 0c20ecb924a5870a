// Candlestack portal: copy buttons and the organization switcher's auto-submit. Loaded from our own
// static files (the Content Security Policy allows no inline script).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.getAttribute("data-copy"));
    if (!field) return;
    var status = document.querySelector("[data-copy-status]");
    var done = function () {
      button.textContent = "Copied";
      if (status) status.textContent = "The key is in your clipboard.";
    };
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        document.execCommand("copy");
        done();
      });
    } else {
      document.execCommand("copy");
      done();
    }
  });
  // A confirmation loaded by htmx takes the keyboard focus (its heading), so screen readers and
  // keyboard users land on it.
  document.addEventListener("htmx:afterSwap", function (event) {
    var heading = event.detail.target.querySelector("h3");
    if (!heading) return;
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  });
  // The verification and invitation links carry their token after "#" (never sent to a server, so
  // never logged): put it in the form and post it.
  var verify = document.querySelector("form[data-verify-fragment]");
  if (verify && window.location.hash.length > 1) {
    verify.querySelector("input[name=token]").value = decodeURIComponent(window.location.hash.slice(1));
    history.replaceState(null, "", window.location.pathname);
    verify.requestSubmit();
  }
  // The password-reset link does the same, but the person still types the new password.
  var reset = document.querySelector("form[data-token-fragment]");
  if (reset && window.location.hash.length > 1) {
    reset.querySelector("input[name=token]").value = decodeURIComponent(window.location.hash.slice(1));
    history.replaceState(null, "", window.location.pathname);
    var password = reset.querySelector("input[type=password]");
    if (password) password.focus();
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.requestSubmit();
    if (event.target.matches("select[data-condition-type]")) conditionFields(event.target);
  });
  // The alert form shows the fields of the chosen condition type only (without script: all of them,
  // each saying which type uses it; the server keeps only the chosen type's members).
  function conditionFields(select) {
    select.form.querySelectorAll("[data-condition]").forEach(function (field) {
      field.hidden = field.getAttribute("data-condition").split(" ").indexOf(select.value) < 0;
    });
  }
  document.querySelectorAll("select[data-condition-type]").forEach(conditionFields);
})();
