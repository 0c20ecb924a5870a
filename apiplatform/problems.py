"""RFC 9457 problem details: the one error shape of the whole API.

Every error response is ``application/problem+json``::

    {"type": "<base>/problems/not-found", "title": "Not found", "status": 404,
     "detail": "...", "instance": "/v1/coins/nope", "request_id": "..."}

Problem types are registered here (``register``) so that each one has a stable ``type`` URI,
a title and a documented meaning; ``GET /problems/`` lists them and ``GET /problems/<slug>``
describes one. Apps raise :class:`ProblemError` (or any DRF exception) and the exception handler
in :mod:`apiplatform.exceptions` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    description: str


_REGISTRY: dict[str, ProblemType] = {}


def register(slug: str, status: int, title: str, description: str) -> ProblemType:
    problem = ProblemType(slug=slug, status=status, title=title, description=description)
    existing = _REGISTRY.get(slug)
    if existing is not None and existing != problem:
        raise ValueError(f"problem type {slug!r} registered twice with different definitions")
    _REGISTRY[slug] = problem
    return problem


def registered() -> dict[str, ProblemType]:
    return dict(_REGISTRY)


def type_uri(slug: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/problems/{slug}"


def problem_body(
    problem: ProblemType,
    *,
    detail: str | None = None,
    instance: str | None = None,
    request_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_uri(problem.slug),
        "title": problem.title,
        "status": problem.status,
        "detail": detail or problem.description,
    }
    if instance:
        body["instance"] = instance
    body["request_id"] = request_id
    if extra:
        body.update(extra)
    return body


class ProblemError(APIException):
    """Raise to answer with a registered problem type; ``extra`` adds members to the body."""

    def __init__(
        self,
        problem: ProblemType,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.problem = problem
        self.status_code = problem.status
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(detail=detail or problem.description)


# Generic problem types used by the gateway and the exception handler.
BAD_REQUEST = register("bad-request", 400, "Bad request", "The request could not be understood.")
VALIDATION_ERROR = register(
    "validation-error",
    400,
    "Invalid request parameters",
    "One or more parameters are invalid; `errors` names each parameter and what is wrong with it.",
)
NOT_AUTHENTICATED = register(
    "not-authenticated", 401, "Authentication required", "Credentials are missing or invalid."
)
PERMISSION_DENIED = register(
    "permission-denied", 403, "Permission denied", "These credentials may not perform this action."
)
NOT_FOUND = register(
    "not-found",
    404,
    "Not found",
    "No resource exists at this URL: an unknown object (e.g. a coin id), or a path that matches no "
    "endpoint (`detail` says so, with a hint such as a trailing slash to drop).",
)
METHOD_NOT_ALLOWED = register(
    "method-not-allowed", 405, "Method not allowed", "This URL does not accept this HTTP method."
)
NOT_ACCEPTABLE = register(
    "not-acceptable", 406, "Not acceptable", "None of the media types in the Accept header can be served."
)
UNSUPPORTED_MEDIA_TYPE = register(
    "unsupported-media-type", 415, "Unsupported media type", "The request body's media type is not accepted."
)
RATE_LIMITED = register(
    "rate-limited", 429, "Too many requests", "A rate limit was exceeded; retry after `Retry-After` seconds."
)
SERVER_ERROR = register(
    "server-error",
    500,
    "Internal server error",
    "Something went wrong on our side. It has been logged under this request id.",
)
SERVICE_UNAVAILABLE = register(
    "service-unavailable", 503, "Service unavailable", "A dependency is unavailable; retry later."
)
