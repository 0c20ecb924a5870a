"""CORS for the public API, answered for browser keys and only for them.

A web page on ``https://app.example.com`` calling ``/v1/...`` with a browser key makes a
cross-origin request with an ``Authorization`` (or ``X-API-Key``) header, so the browser first
sends a **preflight** (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) and then
the **actual request**; it hands the answer to the page only if it carries
``Access-Control-Allow-Origin`` naming the page's origin.

* **Preflight**: it carries no key (browsers never send credentials on a preflight), so nothing can
  be decided about a key there. Every preflight to a key-authenticated public view is answered
  ``204`` with the origin echoed, the methods ``GET, HEAD, OPTIONS``, the request headers the API
  reads, and ``Access-Control-Max-Age``. That grants nothing: it only lets the browser send the
  actual request, which authentication judges (``accounts.keys.verify``): a secret key with an
  ``Origin`` gets ``403 secret-key-in-browser``, a browser key from an origin outside its
  ``allowed_origins`` ``403 origin-not-allowed``. Preflights are not metered.
* **Actual responses** to a request authenticated by a browser key (from one of its origins, or
  authentication would have refused it) carry ``Access-Control-Allow-Origin: <that origin>`` and
  ``Access-Control-Expose-Headers`` (rate limits, ``Retry-After``, ``X-Request-ID``, ``ETag``,
  ``Link``) — whatever the status, so the page can read its 429s and 304s.
* Nothing else gets CORS headers: not secret-key responses, not refused authentications, not the
  management API (JWT, ``/v1/account/``), the schema or the docs. Every response of a public
  key-authenticated view carries ``Vary: Origin`` (the answer depends on it), so a shared cache
  never hands one origin's answer to another. ``Access-Control-Allow-Credentials`` is never sent:
  the key travels in a header, not in a cookie.

"Key-authenticated public view" is any view whose ``authentication_classes`` include
:class:`accounts.authentication.ApiKeyAuthentication` (the gateway's ``PublicAPIView``), so a new
public endpoint is covered without a list of paths to keep up to date.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.utils.cache import patch_vary_headers

from accounts.authentication import ApiKeyAuthentication
from accounts.principal import KeyPrincipal

ALLOW_METHODS = "GET, HEAD, OPTIONS"
ALLOW_HEADERS = "Authorization, X-API-Key, If-None-Match, X-Request-ID"
EXPOSE_HEADERS = "RateLimit, RateLimit-Policy, Retry-After, X-Request-ID, ETag, Link"


def is_key_view(view_func) -> bool:
    """True for a DRF view authenticated with API keys (the public data API)."""
    view_class = getattr(view_func, "cls", None)
    authentication_classes = getattr(view_class, "authentication_classes", ())
    return view_class is not None and ApiKeyAuthentication in authentication_classes


def preflight(origin: str) -> HttpResponse:
    response = HttpResponse(status=204)
    del response["Content-Type"]
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Max-Age"] = str(settings.CORS_PREFLIGHT_MAX_AGE)
    return response


class BrowserKeyCorsMiddleware:
    """Preflights of public key-authenticated views (``process_view``) and the CORS headers of
    browser-key responses (``__call__``). See the module docstring."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = request.resolver_match
        if match is None or not is_key_view(match.func):
            return response
        patch_vary_headers(response, ("Origin",))
        origin = request.META.get("HTTP_ORIGIN")
        principal = getattr(request, "auth", None)  # DRF mirrors request.auth onto the Django request
        if origin is not None and isinstance(principal, KeyPrincipal) and principal.is_browser:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        meta = request.META
        if (
            request.method == "OPTIONS"
            and "HTTP_ORIGIN" in meta
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in meta
            and is_key_view(view_func)
        ):
            return preflight(meta["HTTP_ORIGIN"])
        return None
