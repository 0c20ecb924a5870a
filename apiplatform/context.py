"""Per-request context shared by middleware, logging and error responses."""

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The organization a request acts for, once known (API key or the management API's membership): on
# every log line of the request, never a key, token or user.
organization_id_var: ContextVar[int | None] = ContextVar("organization_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


def organization_known(organization_id: int | None) -> None:
    """The current request acts for this organization (reset with the request by the middleware)."""
    organization_id_var.set(organization_id)
