"""HTTP plumbing every response goes through (listed in ``settings.MIDDLEWARE``, outermost first):

* :class:`RequestIdMiddleware`: request id accepted from X-Request-ID when well-formed, generated
  otherwise, echoed back.
* :class:`CompressionMiddleware`: gzip for the public API's larger answers, never for a response
  carrying a secret (BREACH).
* :class:`UnknownPathMiddleware`: every path under ``/v1/`` that matches no route answers a
  problem+json 404 (never Django's HTML page, never the URL map in debug).
* :class:`PageCSPMiddleware`: the Content Security Policy (django-csp) on pages, not on API answers.
"""

from __future__ import annotations

import gzip
import re
import uuid

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import HttpResponseBase
from django.urls import is_valid_path
from django.utils.cache import patch_vary_headers
from django.utils.text import compress_sequence

from apiplatform import problems
from apiplatform.context import organization_id_var, request_id_var
from apiplatform.exceptions import problem_http_response

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def normalise_request_id(candidate: str | None) -> str:
    if candidate and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = normalise_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        organization_token = organization_id_var.set(None)
        try:
            response = self.get_response(request)
        finally:
            organization_id_var.reset(organization_token)
            request_id_var.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


# --- compression ----------------------------------------------------------------------------------
API_PREFIX = "/v1/"
# The management API answers tokens and new API keys: never compressed, whatever a view says.
SECRET_PREFIXES = ("/v1/account/",)
_NO_COMPRESSION_ATTR = "never_compress"
_TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/vnd.oai.openapi")


def never_compress(response: HttpResponseBase) -> HttpResponseBase:
    """Mark a response that carries a secret (a key, a token): it is never compressed, so its
    length cannot leak the secret to an attacker who also controls part of the body (BREACH)."""
    setattr(response, _NO_COMPRESSION_ATTR, True)
    return response


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value accepts gzip (``q=0`` refuses; ``*`` stands for
    codings not listed)."""
    star = None
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def _weak(etag: str) -> str:
    return etag if etag.startswith("W/") else f"W/{etag}"


class CompressionMiddleware:
    """gzip for answers of the API (``/v1/`` outside ``/v1/account/``) of at least
    ``COMPRESSION_MIN_BYTES`` when the client asks for it (``Accept-Encoding: gzip``).

    Never compressed: the management API (``/v1/account/``: tokens, new and rotated keys), any
    response marked with :func:`never_compress`, responses already encoded, non-text bodies.
    ETags stay correct: for a client that accepts gzip the ETag of every answer (200, compressed or
    not, and 304) is weak (``W/"…"``: same content, not byte-identical), and every answer that may
    be compressed (large 200s, streams, 304s) says ``Vary: Accept-Encoding``. ``If-None-Match``
    compares weakly, so either form revalidates."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        status = response.status_code
        path = request.path
        if (
            status not in (200, 304)
            or not path.startswith(API_PREFIX)
            or path.startswith(SECRET_PREFIXES)
            or getattr(response, _NO_COMPRESSION_ATTR, False)
        ):
            return response
        small = (
            status == 200
            and not response.streaming
            and len(response.content) < settings.COMPRESSION_MIN_BYTES
        )
        if not small:  # a small answer is never compressed: it does not vary
            patch_vary_headers(response, ("Accept-Encoding",))
        if not accepts_gzip(request.META.get("HTTP_ACCEPT_ENCODING", "")):
            return response
        etag = response.get("ETag")
        if etag:
            response["ETag"] = _weak(etag)
        if (
            small
            or status != 200
            or response.has_header("Content-Encoding")
            or not response.get("Content-Type", "").startswith(_TEXT_TYPES)
        ):
            return response
        if response.streaming:
            response.streaming_content = compress_sequence(response.streaming_content)
            del response["Content-Length"]
        else:
            content = response.content
            compressed = gzip.compress(content, compresslevel=6, mtime=0)
            if len(compressed) >= len(content):
                return response
            response.content = compressed
            response["Content-Length"] = str(len(compressed))
        response["Content-Encoding"] = "gzip"
        return response


# --- unknown paths --------------------------------------------------------------------------------
class UnknownPathMiddleware:
    """A path under ``/v1/`` that matches no route: a problem+json 404 ``not-found`` saying so
    (with a hint when the path without its trailing slash exists), in debug as in production.

    Runs outside CommonMiddleware, so ``APPEND_SLASH`` keeps redirecting ``/v1/docs`` to
    ``/v1/docs/``; a 404 raised by a view (an unknown coin) is the view's own problem."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code != 404
            or request.resolver_match is not None  # a view answered 404 itself
            or not request.path.startswith(API_PREFIX)
        ):
            return response
        path = request.path
        detail = f"No endpoint at {path[:200]}; the API reference is at /v1/docs/."
        urlconf = getattr(request, "urlconf", None)
        if path.endswith("/") and len(path) > len(API_PREFIX) and is_valid_path(path[:-1], urlconf):
            detail = (
                f"No endpoint at {path[:200]}; did you mean {path[:-1][:200]} (without the trailing slash)?"
            )
        return problem_http_response(request, problems.NOT_FOUND, detail)


# --- Content Security Policy ------------------------------------------------------------------------
class PageCSPMiddleware(CSPMiddleware):
    """django-csp's middleware for pages only: the API's answers (JSON under ``/v1/``, the docs pages
    excepted) skip building the policy, ~40 µs per request on the public API's hot path; a browser never
    renders them as a document (``nosniff``)."""

    DOCS_PAGES = ("/v1/docs/", "/v1/redoc/")

    def process_response(self, request, response):
        path = request.path_info
        if path.startswith(API_PREFIX) and not path.startswith(self.DOCS_PAGES):
            return response
        return super().process_response(request, response)
