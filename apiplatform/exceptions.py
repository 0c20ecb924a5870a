"""One exception handler for the API and one set of Django error views, both emitting problem+json."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apiplatform import problems
from apiplatform.context import current_request_id
from apiplatform.renderers import dumps

logger = logging.getLogger(__name__)

_BY_EXCEPTION: list[tuple[type[Exception], problems.ProblemType]] = [
    (drf.ValidationError, problems.VALIDATION_ERROR),
    (drf.ParseError, problems.BAD_REQUEST),
    (drf.NotAuthenticated, problems.NOT_AUTHENTICATED),
    (drf.AuthenticationFailed, problems.NOT_AUTHENTICATED),
    (drf.PermissionDenied, problems.PERMISSION_DENIED),
    (PermissionDenied, problems.PERMISSION_DENIED),
    (drf.NotFound, problems.NOT_FOUND),
    (Http404, problems.NOT_FOUND),
    (drf.MethodNotAllowed, problems.METHOD_NOT_ALLOWED),
    (drf.NotAcceptable, problems.NOT_ACCEPTABLE),
    (drf.UnsupportedMediaType, problems.UNSUPPORTED_MEDIA_TYPE),
    (drf.Throttled, problems.RATE_LIMITED),
]


def flatten_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """Turn DRF's nested error detail into ``[{"parameter": "limit", "detail": "..."}]``."""
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            name = key if not prefix else f"{prefix}.{key}"
            if key == "non_field_errors":
                name = prefix or "request"
            out.extend(flatten_errors(value, name))
        return out
    if isinstance(detail, list):
        out = []
        for item in detail:
            out.extend(flatten_errors(item, prefix))
        return out
    return [{"parameter": prefix or "request", "detail": str(detail)}]


def _problem_for(exc: Exception) -> problems.ProblemType:
    for exc_type, problem in _BY_EXCEPTION:
        if isinstance(exc, exc_type):
            return problem
    return problems.SERVER_ERROR


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context.get("request")
    instance = request.path if request is not None else None
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}

    if isinstance(exc, problems.ProblemError):
        problem = exc.problem
        detail = str(exc.detail)
        extra.update(exc.extra)
        headers.update(exc.headers)
    else:
        problem = _problem_for(exc)
        if problem is problems.SERVER_ERROR:
            logger.exception("unhandled error in %s", instance)
            detail = problem.description
        elif isinstance(exc, drf.ValidationError):
            extra["errors"] = flatten_errors(exc.detail)
            detail = "; ".join(f"{e['parameter']}: {e['detail']}" for e in extra["errors"])
        elif isinstance(exc, drf.APIException):
            detail = str(exc.detail) if not isinstance(exc.detail, dict | list) else problem.description
        else:
            detail = str(exc) or problem.description

    if isinstance(exc, drf.APIException):
        auth_header = getattr(exc, "auth_header", None)  # AuthenticationFailed & co.
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)  # Throttled
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
    if request is not None and isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        # DRF turns 401 into 403 when no authenticator offers a WWW-Authenticate header; keep 401.
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')

    body = problems.problem_body(
        problem, detail=detail, instance=instance, request_id=current_request_id(), extra=extra
    )
    return Response(body, status=problem.status, headers=headers, content_type=problems.PROBLEM_CONTENT_TYPE)


def problem_http_response(
    request, problem: problems.ProblemType, detail: str | None = None, **extra: Any
) -> HttpResponse:
    """A problem+json response outside DRF (Django error views, middleware)."""
    body = problems.problem_body(
        problem, detail=detail, instance=request.path, request_id=current_request_id(), extra=extra or None
    )
    return HttpResponse(dumps(body), status=problem.status, content_type=problems.PROBLEM_CONTENT_TYPE)


def bad_request(request, exception=None):
    return problem_http_response(request, problems.BAD_REQUEST)


def permission_denied(request, exception=None):
    return problem_http_response(request, problems.PERMISSION_DENIED)


def page_not_found(request, exception=None):
    return problem_http_response(request, problems.NOT_FOUND)


def server_error(request):
    return problem_http_response(request, problems.SERVER_ERROR)
