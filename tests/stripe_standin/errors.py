"""The one error type of the stand-in: rendered in Stripe's error shape with Stripe's status."""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """``{"error": {"type", "message", "code", "param"}}`` with an HTTP status (400, 401, 404, 500)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def no_such(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    """A missing object: 404 for the object in the path, 400 for one named in a parameter."""
    status = 400 if param else 404
    return StripeError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param or "id")
