"""Query-parameter parsing and validation for the public market data API.

Every parser raises DRF ``ValidationError({"<parameter>": "<what is wrong>"})``, which the project's
exception handler turns into a 400 ``validation-error`` problem whose ``errors`` name each
parameter. Nothing here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError

from marketdata.models import TIMEFRAMES

MAX_CANDLES = 5000
DEFAULT_CANDLES = 500
#: Earliest and latest accepted times (keeps every value inside PostgreSQL's and Python's range).
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def fail(parameter: str, message: str) -> NoReturn:
    raise ValidationError({parameter: [message]})


def _get(query, name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if "\x00" in value:
        fail(name, "must not contain NUL characters")
    return value.strip()


def timeframe(query, *, default: str | None = "1h") -> str:
    value = _get(query, "timeframe") or default
    if value is None:
        fail("timeframe", f"is required; one of {', '.join(TIMEFRAMES)}")
    if value not in TIMEFRAMES:
        fail("timeframe", f"must be one of {', '.join(TIMEFRAMES)}")
    return value


def time_value(query, name: str) -> datetime | None:
    """ISO 8601 date-time (naive = UTC), ISO date (midnight UTC) or unix seconds, as an aware UTC datetime."""
    raw = _get(query, name)
    if raw is None or raw == "":
        return None
    parsed: datetime | None = None
    if re.fullmatch(r"-?\d+(\.\d+)?", raw):
        seconds = float(raw)
        if math.isfinite(seconds) and MIN_TIME.timestamp() <= seconds <= MAX_TIME.timestamp():
            parsed = datetime.fromtimestamp(seconds, tz=UTC)
        else:
            fail(name, "unix time out of range (2000-01-01 … 2100-01-01)")
    else:
        try:
            parsed = parse_datetime(raw)
            if parsed is None and (day := parse_date(raw)) is not None:
                parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)  # a date: its midnight UTC
        except (ValueError, OverflowError):
            parsed = None
        if parsed is None:
            fail(name, "must be an ISO 8601 date-time (e.g. 2026-01-01T00:00:00Z), a date, or unix seconds")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if not MIN_TIME <= parsed <= MAX_TIME:
        fail(name, "out of range (2000-01-01 … 2100-01-01)")
    return parsed


def time_range(query) -> tuple[datetime | None, datetime | None]:
    start, end = time_value(query, "start"), time_value(query, "end")
    if start is not None and end is not None and end <= start:
        fail("end", "must be after start")
    return start, end


def integer(query, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = _get(query, name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[+-]?\d{1,12}", raw):
        fail(name, "must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        fail(name, f"must be between {minimum} and {maximum}")
    return value


def number(query, name: str, *, default: float | None = None, minimum=None, maximum=None) -> float | None:
    raw = _get(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        fail(name, "must be a finite number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        fail(name, f"must be between {minimum} and {maximum}")
    return value


def choice(query, name: str, *, choices: tuple[str, ...], default: str) -> str:
    value = _get(query, name)
    if value is None or value == "":
        return default
    if value not in choices:
        fail(name, f"must be one of {', '.join(choices)}")
    return value


def boolean(query, name: str) -> bool | None:
    value = _get(query, name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    fail(name, "must be true or false")
    return None


def id_list(query, name: str = "ids", *, maximum: int, required: bool = False) -> list[str] | None:
    raw = _get(query, name)
    if raw is None or raw == "":
        if required:
            fail(name, "is required: comma-separated coin ids, e.g. bitcoin,ethereum")
        return None
    ids = list(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    if not ids:
        fail(name, "must list at least one coin id")
    if len(ids) > maximum:
        fail(name, f"at most {maximum} ids per call")
    for coin in ids:
        if not _ID_RE.match(coin):
            fail(name, f"{coin[:50]!r} is not a valid coin id")
    return ids


def coin_id(value: str) -> str | None:
    """A path coin id, or None when it cannot be a coin id (→ 404)."""
    return value if _ID_RE.match(value or "") else None


# --- cursors: opaque, URL-safe tokens for "continue after this row" -----------------------------


@dataclass(frozen=True)
class TimeCursor:
    order: str  # "asc" | "desc"
    after_us: int  # epoch microseconds of the last row returned


def encode_time_cursor(order: str, t: datetime) -> str:
    us = int(t.timestamp() * 1_000_000)
    raw = f"t1:{order}:{us}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def time_cursor(query, *, order: str) -> TimeCursor | None:
    raw = _get(query, "cursor")
    if raw is None or raw == "":
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        version, cursor_order, us = text.split(":")
        value = int(us)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        fail("cursor", "is not a cursor returned by this API")
    if version != "t1" or cursor_order not in ("asc", "desc"):
        fail("cursor", "is not a cursor returned by this API")
    if cursor_order != order:
        fail("cursor", "was issued for the other order; keep `order` unchanged while paging")
    if not int(MIN_TIME.timestamp() * 1e6) <= value <= int(MAX_TIME.timestamp() * 1e6):
        fail("cursor", "is not a cursor returned by this API")
    return TimeCursor(cursor_order, value)


def encode_key_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(f"k1:{key}".encode()).decode().rstrip("=")


def key_cursor(query) -> str | None:
    raw = _get(query, "cursor")
    if raw is None or raw == "":
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    if not text.startswith("k1:") or not coin_id(text[3:]):
        fail("cursor", "is not a cursor returned by this API")
    return text[3:]


def known_only(query, allowed: set[str]) -> None:
    """Reject unknown query parameters (a typo such as `limt=` should not be silently ignored)."""
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise ValidationError({name[:60]: ["unknown parameter"] for name in unknown[:10]})
