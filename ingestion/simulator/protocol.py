"""CoinGecko's wire conventions, shared by every endpoint: the ``Reply`` an endpoint raises or returns,
the three error-body shapes, the 429 body, JSON number formatting and query-parameter parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from http import HTTPStatus

from .core import to_ms

RATE_LIMIT_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher rate limits.",
    }
}
VS_RATES = {
    "usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88, "cad": 1.37, "aud": 1.52,
    "cny": 7.2, "inr": 84.0, "krw": 1380.0, "brl": 5.6, "hkd": 7.8, "sgd": 1.35,
}  # fmt: skip
#: (name, unit) of each fiat currency, as /exchange_rates shows them.
VS_NAMES = {
    "usd": ("US Dollar", "$"), "eur": ("Euro", "€"), "gbp": ("British Pound Sterling", "£"),
    "jpy": ("Japanese Yen", "¥"), "chf": ("Swiss Franc", "Fr."), "cad": ("Canadian Dollar", "CA$"),
    "aud": ("Australian Dollar", "A$"), "cny": ("Chinese Yuan", "¥"), "inr": ("Indian Rupee", "₹"),
    "krw": ("South Korean Won", "₩"), "brl": ("Brazil Real", "R$"), "hkd": ("Hong Kong Dollar", "HK$"),
    "sgd": ("Singapore Dollar", "S$"),
}  # fmt: skip


class Reply(Exception):
    """An answer: ``body`` is serialised as JSON unless ``raw`` bytes are given. Raised to answer early
    (errors, faults), returned for the normal answer."""

    def __init__(self, status: int, body, headers: dict[str, str] | None = None, raw: bytes | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.raw = raw


def flat_error(status: int, message: str) -> Reply:
    """``{"error": message}``: parameter errors and unknown paths/coins."""
    return Reply(status, {"error": message})


def status_error(status: int, code: int, message: str) -> Reply:
    """``{"status": {"error_code", "error_message"}}``: key and plan errors."""
    return Reply(status, {"status": {"error_code": code, "error_message": message}})


def nested_error(status: int, code: int, message: str) -> Reply:
    """``{"error": {"status": {"timestamp", "error_code", "error_message"}}}``: the demo history limit."""
    ts = datetime.now(tz=UTC).isoformat(timespec="milliseconds")
    return Reply(
        status, {"error": {"status": {"timestamp": ts, "error_code": code, "error_message": message}}}
    )


def status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def num(x: float | None) -> float | int | None:
    """JSON number: integers without a fraction stay ints (as CoinGecko prints them)."""
    if x is None:
        return None
    f = float(x)
    if f != f:  # NaN
        return None
    return int(f) if f.is_integer() and -1e15 < f < 1e15 else f


def round_sig(x: float, digits: int = 8) -> float:
    """Scalar twin of walk.round_significant for derived values (conversions, outliers)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def vs_rate(value: str | None, name: str) -> float:
    """The USD conversion rate of the ``vs_currency``-like parameter ``name``; 400 if missing/unknown."""
    if not value:
        raise flat_error(400, f"Missing parameter {name}")
    rate = VS_RATES.get(value.lower())
    if rate is None:
        raise flat_error(400, f"invalid {name}")
    return rate


def parse_days(value: str | None) -> float | None:
    """The ``days`` parameter: a positive number, or ``None`` for ``max``."""
    if value is None or value == "":
        raise flat_error(400, "Missing parameter days")
    if value == "max":
        return None
    try:
        days = float(value)
    except ValueError:
        raise flat_error(400, "invalid days") from None
    if not math.isfinite(days) or days <= 0:
        raise flat_error(400, "invalid days")
    return days


def parse_time(value: str | None, name: str) -> int:
    """A ``from``/``to`` parameter (epoch seconds or ISO 8601) in epoch milliseconds."""
    if value is None or value == "":
        raise flat_error(400, f"Missing parameter {name}")
    try:
        return math.floor(float(value) * 1000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise flat_error(400, f"invalid {name}") from None
    return to_ms(dt)
