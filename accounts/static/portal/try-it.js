// The portal's "Try the API" page: Swagger UI (drf-spectacular-sidecar's bundle, served by us) with the
// visitor's API key ready. The key is pasted once and kept in this browser's localStorage only; it is
// sent only with "Try it out" calls to this site's public API (/v1/, not the JWT management API
// under /v1/account/). A static file: the Content Security Policy allows no inline script.
(function () {
  "use strict";
  var STORE = "candlestack.try-it.api-key";
  var SCHEME = "ApiKeyHeader"; // accounts/schema.py: the X-API-Key security scheme
  var root = document.getElementById("swagger-ui");
  var form = document.querySelector("[data-try-key-form]");
  if (!root || !form) return;
  var input = form.querySelector("input[name=key]");
  var status = form.querySelector("[data-try-key-status]");
  var ui = null;

  function kept() {
    try {
      return window.localStorage.getItem(STORE) || "";
    } catch (e) {
      return "";
    }
  }
  // What the page shows of a kept key: its public prefix (cs_<env>_<id>), never the secret part.
  function label(key) {
    var parts = key.split("_");
    return parts.length >= 3 ? parts.slice(0, parts.length - 1).join("_") + "_…" : "a key";
  }
  function show() {
    var key = kept();
    status.textContent = key
      ? "Kept in this browser: " + label(key) + ". “Try it out” sends it."
      : "No key kept in this browser.";
    form.querySelector("[data-try-key-forget]").disabled = !key;
  }
  function authorize() {
    var key = kept();
    if (!ui) return;
    if (key) ui.preauthorizeApiKey(SCHEME, key);
    else ui.authActions.logout([SCHEME]);
  }
  function ours(url) {
    var u = new URL(url, window.location.href);
    return (
      u.origin === window.location.origin &&
      u.pathname.indexOf("/v1/") === 0 &&
      u.pathname.indexOf("/v1/account/") !== 0
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var key = input.value.trim();
    if (!key) {
      status.textContent = "Paste a key first.";
      input.focus();
      return;
    }
    try {
      window.localStorage.setItem(STORE, key);
    } catch (e) {
      status.textContent = "This browser does not let the page keep the key (private mode?).";
      return;
    }
    input.value = "";
    show();
    authorize();
  });
  form.querySelector("[data-try-key-forget]").addEventListener("click", function () {
    try {
      window.localStorage.removeItem(STORE);
    } catch (e) {
      /* nothing kept */
    }
    show();
    authorize();
    input.focus();
  });
  show();

  // Swagger UI leaves some of its fields without an accessible name (the items of an array parameter,
  // the examples pickers): name them after their parameter as they appear.
  function named(el) {
    return (
      el.getAttribute("aria-label") ||
      el.getAttribute("aria-labelledby") ||
      (el.labels && el.labels.length) ||
      el.getAttribute("title")
    );
  }
  function nameFields() {
    root.querySelectorAll("input, select, textarea").forEach(function (el) {
      if (el.type === "hidden" || named(el)) return;
      var row = el.closest("[data-param-name]");
      var param = row ? row.getAttribute("data-param-name") : "";
      var name;
      if (el.classList.contains("examples-select-element")) name = (param ? param + ": " : "") + "examples";
      else if (el.tagName === "SELECT") name = "Media type";
      else name = param ? "Value of " + param : el.getAttribute("placeholder") || "Value";
      el.setAttribute("aria-label", name);
    });
  }
  new MutationObserver(nameFields).observe(root, { childList: true, subtree: true });

  if (typeof window.SwaggerUIBundle !== "function") return;
  ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-schema-url"),
    domNode: root,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: false,
    validatorUrl: null,
    persistAuthorization: false, // the key lives under our own name above, not in Swagger's store
    tryItOutEnabled: true,
    syntaxHighlight: { activated: false }, // plain <pre>: the highlighter's colours miss AA contrast
    requestInterceptor: function (request) {
      var key = kept();
      var headers = request.headers || (request.headers = {});
      if (key && ours(request.url) && !headers["X-API-Key"] && !headers.Authorization) {
        headers["X-API-Key"] = key;
      }
      return request;
    },
    onComplete: authorize,
  });
})();
