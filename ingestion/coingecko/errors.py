"""Errors raised by the CoinGecko client. All derive from ``CoinGeckoError``."""

from __future__ import annotations


class CoinGeckoError(Exception):
    """Base class. ``endpoint`` names the API path (e.g. ``/coins/markets``) when known."""

    retryable = False

    def __init__(self, message: str, *, endpoint: str = ""):
        super().__init__(f"{endpoint}: {message}" if endpoint else message)
        self.endpoint = endpoint
        self.attempts = 0  # set by the client when it gives up


class CoinGeckoHTTPError(CoinGeckoError):
    """A non-2xx answer. ``error_code`` is CoinGecko's own code (10002, 10005, 10010, 10011, 10012,
    429...) parsed from any of its three error shapes, or None."""

    def __init__(
        self,
        *,
        endpoint: str,
        status: int,
        error_code: int | None = None,
        error_message: str = "",
        retry_after: float | None = None,
    ):
        detail = f"HTTP {status}"
        if error_code is not None:
            detail += f" (error_code {error_code})"
        if error_message:
            detail += f": {error_message}"
        super().__init__(detail, endpoint=endpoint)
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        self.retry_after = retry_after


class CoinGeckoRateLimited(CoinGeckoHTTPError):
    """HTTP 429 (JSON or CDN HTML). ``retry_after`` comes from the ``retry-after`` header."""

    retryable = True


class CoinGeckoServerError(CoinGeckoHTTPError):
    """HTTP 5xx (and 408): retried."""

    retryable = True


class CoinGeckoAuthError(CoinGeckoHTTPError):
    """401/403 caused by the key (missing, invalid, revoked, wrong host: 10002/10010/10011)."""


class CoinGeckoPlanError(CoinGeckoHTTPError):
    """The plan does not allow the request (10005 paid-only endpoint, 10012 history beyond the plan)."""


class CoinGeckoNotFound(CoinGeckoHTTPError):
    """404, e.g. ``{"error":"coin not found"}``."""


class CoinGeckoBadRequest(CoinGeckoHTTPError):
    """Other 4xx (400 invalid parameter, 414 URI too long...): not retried."""


class CoinGeckoTransportError(CoinGeckoError):
    """Timeout or connection failure: retried."""

    retryable = True


class CoinGeckoPayloadError(CoinGeckoError):
    """The body is not valid JSON (e.g. truncated): retried, since a new answer may be whole."""

    retryable = True


class CoinGeckoShapeError(CoinGeckoError):
    """Valid JSON that is not the expected shape at all for the endpoint: not retried."""


class NoUsableKeyError(CoinGeckoError):
    """Every configured key was taken out of rotation after answering 401/403."""


class BudgetTimeout(CoinGeckoError):
    """Waited longer than allowed for the shared rate budget."""

    retryable = False
