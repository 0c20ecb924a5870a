"""The OpenAPI document and the pages that show it (``/v1/schema/``, ``/v1/docs/``, ``/v1/redoc/``),
cheap to serve and limited per client address.

Generating the document costs 0.1-0.4 s of CPU; it depends only on the code, so each process builds
it once (at start-up with :func:`warm`, else on the first request, under a lock: concurrent first
requests wait for that one build) and serves the rendered bytes from memory with a strong ``ETag``
(``If-None-Match`` answers 304).
drf-spectacular's ``lang`` and ``version`` query parameters are not honoured: one document per
format (YAML, JSON).

All three routes are public, so each client address (``accounts.authentication.client_ip``:
``TRUSTED_PROXY_DEPTH`` honoured, IPv6 counted per /64) may call them ``DOCS_RATE_IP`` times per
window (django-ratelimit on the shared cache, exact across processes); beyond that the answer is a
429 ``rate-limited`` problem with ``Retry-After``. While the cache is unreachable nothing is counted
(fails open, as the sign-up and login limits do).

A composition point (scripts/check_imports.py): it uses accounts' view of the client address.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_cache_control
from django.utils.decorators import method_decorator
from django.utils.http import parse_etags
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import (
    SCHEMA_KWARGS,
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from accounts import failures
from accounts.authentication import client_ip
from apiplatform.exceptions import problem_http_response
from apiplatform.problems import RATE_LIMITED

GROUP = "docs"


@dataclass(frozen=True)
class Rendered:
    content: bytes
    content_type: str
    etag: str


_lock = threading.Lock()
_schema: dict | None = None
_rendered: dict[str, Rendered] = {}


def clear() -> None:
    """Forget the built document (tests that change what it contains; a new process starts empty)."""
    global _schema
    with _lock:
        _schema = None
        _rendered.clear()


def limited(request: HttpRequest) -> HttpResponse | None:
    """Count one call of this client address; a 429 problem with Retry-After when over budget."""
    bucket = failures.client_bucket(client_ip(request)) or "unknown"
    retry_after = failures.over_rate(request, group=GROUP, key=bucket, rate=settings.DOCS_RATE_IP)
    if retry_after is None:
        return None
    response = problem_http_response(
        request,
        RATE_LIMITED,
        "Too many requests for the API documentation from this address. Wait before trying again.",
    )
    response["Retry-After"] = str(retry_after)
    return response


class LimitedPerClient:
    """Mixin for the documentation views: :func:`limited` before anything else (so the refusal is
    problem+json whatever the view would have rendered)."""

    def dispatch(self, request, *args, **kwargs):
        refused = limited(request)
        if refused is not None:
            return refused
        return super().dispatch(request, *args, **kwargs)


class SchemaView(LimitedPerClient, SpectacularAPIView):
    """``/v1/schema/``: the document built once per process, rendered once per format."""

    @extend_schema(**SCHEMA_KWARGS)
    def get(self, request, *args, **kwargs):
        found = rendered(request.accepted_renderer, request)
        if found.etag in parse_etags(request.META.get("HTTP_IF_NONE_MATCH", "")):
            response: HttpResponse = HttpResponseNotModified()
        else:
            response = HttpResponse(found.content, content_type=found.content_type)
            response["Content-Disposition"] = self._content_disposition(request)
        response["ETag"] = found.etag
        patch_cache_control(response, public=True, max_age=settings.DOCS_SCHEMA_MAX_AGE)
        return response

    def _content_disposition(self, request) -> str:
        title = settings.SPECTACULAR_SETTINGS.get("TITLE") or "schema"
        return f'inline; filename="{title}.{request.accepted_renderer.format}"'


def rendered(renderer, request: HttpRequest | None = None) -> Rendered:
    """The document as ``renderer`` renders it, built and rendered at most once per process (the
    media type's parameters, e.g. ``indent``, are ignored: one body per format)."""
    global _schema
    key = renderer.media_type
    found = _rendered.get(key)
    if found is not None:
        return found
    with _lock:  # one build per process, however many requests arrive while it runs
        found = _rendered.get(key)
        if found is not None:
            return found
        if _schema is None:
            view = SchemaView
            generator = view.generator_class(urlconf=view.urlconf, api_version=None, patterns=view.patterns)
            _schema = generator.get_schema(request=request, public=view.serve_public)
        content = renderer.render(_schema, renderer.media_type, {})
        content_type = renderer.media_type
        if renderer.charset:
            content_type += f"; charset={renderer.charset}"
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        found = _rendered[key] = Rendered(bytes(content), content_type, etag)
        return found


def warm() -> None:
    """Build and render the document now, for every format (deploy/gunicorn.conf.py calls it in
    the master process before the workers fork, so they start with it)."""
    for renderer_class in SchemaView.renderer_classes:
        rendered(renderer_class())


# The Content Security Policy (settings.CONTENT_SECURITY_POLICY) forbids inline script and style;
# drf-spectacular's Swagger UI and Redoc pages start with an inline script and Redoc styles itself
# inline and runs a blob: worker. These two pages (no form, no session-only data) relax exactly that.
DOCS_PAGE_CSP = {
    "script-src": [UNSAFE_INLINE],
    "style-src": [UNSAFE_INLINE],
    "worker-src": [SELF, "blob:"],
}


@method_decorator(csp_update(DOCS_PAGE_CSP), name="dispatch")
class SwaggerView(LimitedPerClient, SpectacularSwaggerView):
    pass


@method_decorator(csp_update(DOCS_PAGE_CSP), name="dispatch")
class RedocView(LimitedPerClient, SpectacularRedocView):
    pass
