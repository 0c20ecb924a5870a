"""Query-parameter parsing and validation for the public market data API.

Every parser raises DRF ``ValidationError({"<parameter>": "<what is wrong>"})``, which the project's
exception handler turns into a 400 ``validation-error`` problem whose ``errors`` name each
parameter. The rules are the ones the OpenAPI document states (``marketdata.api.docs`` builds the
parameter schemas from the constants here): a parameter that is present must not be empty, numbers
outside their range say so and give the range, times are ISO 8601 or whole unix seconds. Nothing
here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NoReturn

import orjson
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError

from marketdata.models import TIMEFRAMES

MAX_CANDLES = 5000
DEFAULT_CANDLES = 500
MAX_OFFSET = 100_000
MAX_IDS = 250
#: Coins per call of the multi-coin candles (``GET /v1/candles``).
MAX_CANDLE_IDS = 50
#: Points per answer of ``market_chart`` (a longer range needs a coarser interval).
MAX_CHART_POINTS = 10_000
MAX_Q = 100
#: Earliest and latest times looked at: earlier or later times are clamped to these (no data exists
#: outside them), which keeps every value inside PostgreSQL's and Python's range.
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
#: Unix seconds accepted (1970-01-01 … 2100-01-01): a 13-digit number is milliseconds, refused.
MAX_UNIX_SECONDS = int(MAX_TIME.timestamp())
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
_ID_RE = re.compile(ID_PATTERN)
_INT_RE = re.compile(r"[+-]?\d+")


def fail(parameter: str, message: str) -> NoReturn:
    raise ValidationError({parameter: [message]})


def _get(query, name: str) -> str | None:
    """The raw value of ``name`` (None when absent); present but empty is an error."""
    value = query.get(name)
    if value is None:
        return None
    if value == "":
        fail(name, "must not be empty; leave the parameter out to use its default")
    if "\x00" in value:
        fail(name, "must not contain NUL characters")
    return value


def timeframe(query, *, default: str = "1h") -> str:
    value = _get(query, "timeframe") or default
    if value not in TIMEFRAMES:
        fail("timeframe", f"must be one of {', '.join(TIMEFRAMES)}")
    return value


def _clamp(value: datetime) -> datetime:
    return min(max(value, MIN_TIME), MAX_TIME)


def time_value(query, name: str) -> datetime | None:
    """An ISO 8601 date-time (naive = UTC), an ISO date (midnight UTC) or whole unix seconds, as an
    aware UTC datetime clamped to MIN_TIME … MAX_TIME."""
    raw = _get(query, name)
    if raw is None:
        return None
    if _INT_RE.fullmatch(raw):
        digits = raw.lstrip("+-")
        if len(digits) >= 13 and not raw.startswith("-"):
            fail(name, f"{raw[:20]} looks like milliseconds: send unix time in seconds (e.g. {raw[:10]})")
        seconds = int(raw) if len(digits) <= 12 else -1
        if not 0 <= seconds <= MAX_UNIX_SECONDS:
            fail(name, f"unix seconds out of range: must be between 0 and {MAX_UNIX_SECONDS}")
        return _clamp(datetime.fromtimestamp(seconds, tz=UTC))
    parsed: datetime | None
    try:
        parsed = parse_datetime(raw.upper())  # RFC 3339 allows a lower-case "t" and "z"
        if parsed is None and (day := parse_date(raw)) is not None:
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)  # a date: its midnight UTC
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        fail(
            name,
            "must be an ISO 8601 date-time (e.g. 2026-01-01T00:00:00Z), a date (2026-01-01) or unix seconds",
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _clamp(parsed.astimezone(UTC))
    except OverflowError:  # year 1 or 9999 with an offset that leaves the calendar
        return MIN_TIME if parsed.year < 2000 else MAX_TIME


def date_value(query, name: str) -> date:
    """A required calendar date, ``YYYY-MM-DD`` (a UTC day)."""
    raw = _get(query, name)
    if raw is None:
        fail(name, "is required: a date, YYYY-MM-DD (a UTC day)")
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        fail(name, f"{raw[:30]!r} is not a date: send YYYY-MM-DD (e.g. 2026-11-01)")


def time_range(query) -> tuple[datetime | None, datetime | None]:
    """``start`` and ``end``; an ``end`` at or before ``start`` is an empty range (no rows)."""
    return time_value(query, "start"), time_value(query, "end")


def integer(query, name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = _get(query, name)
    if raw is None:
        return default
    if not _INT_RE.fullmatch(raw):
        fail(name, f"must be an integer between {minimum} and {maximum}")
    value = int(raw) if len(raw) <= 20 else (maximum + 1 if not raw.startswith("-") else minimum - 1)
    if not minimum <= value <= maximum:
        fail(name, f"{raw[:24]} is out of range: must be between {minimum} and {maximum}")
    return value


def number(
    query,
    name: str,
    *,
    default: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    raw = _get(query, name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", raw):
        fail(name, "must be a finite number (e.g. 30 or 2.5)")
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        fail(name, "must be a finite number (e.g. 30 or 2.5)")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        fail(name, f"{raw[:24]} is out of range: must be between {minimum:g} and {maximum:g}")
    return value


def choice(query, name: str, *, choices: tuple[str, ...], default: str) -> str:
    value = _get(query, name)
    if value is None:
        return default
    if value not in choices:
        fail(name, f"must be one of {', '.join(choices)}")
    return value


def boolean(query, name: str) -> bool | None:
    value = _get(query, name)
    if value is None:
        return None
    if value in ("true", "false"):
        return value == "true"
    fail(name, "must be true or false")


def text(query, name: str, *, maximum: int = MAX_Q) -> str | None:
    value = _get(query, name)
    if value is not None and len(value) > maximum:
        fail(name, f"at most {maximum} characters")
    return value


def id_list(query, name: str = "ids", *, maximum: int = MAX_IDS, required: bool = False) -> list[str] | None:
    """Coin ids, comma-separated (`ids=a,b`) and/or repeated (`ids=a&ids=b`); lower-cased, de-duplicated."""
    values = query.getlist(name) if hasattr(query, "getlist") else [query[name]] if name in query else []
    if not values:
        if required:
            fail(name, "is required: comma-separated coin ids, e.g. bitcoin,ethereum")
        return None
    parts: list[str] = []
    for value in values:
        if value == "":
            fail(name, "must not be empty: comma-separated coin ids, e.g. bitcoin,ethereum")
        parts += value.split(",")
    for coin in parts:
        if not _ID_RE.match(coin):
            fail(name, f"{coin[:50]!r} is not a coin id (letters, digits, '.', '_', '-'; no spaces)")
    if len(parts) > maximum:
        fail(name, f"at most {maximum} ids per call")
    return list(dict.fromkeys(part.lower() for part in parts))


def vs_currency(query, *, supported: tuple[str, ...]) -> str:
    """``vs``: the quote currency (lower-cased), one of ``supported``; default usd."""
    value = _get(query, "vs")
    if value is None:
        return "usd"
    value = value.lower()
    if value not in supported:
        fail("vs", f"{value[:20]!r} is not a supported quote currency: must be one of {', '.join(supported)}")
    return value


def include(query, *, groups: tuple[str, ...]) -> tuple[str, ...]:
    """``include``: comma-separated field groups (and/or repeated), each one of ``groups``; in the
    order of ``groups``, without duplicates."""
    values = (
        query.getlist("include")
        if hasattr(query, "getlist")
        else [query["include"]]
        if "include" in query
        else []
    )
    asked: set[str] = set()
    for value in values:
        if value == "":
            fail("include", f"must not be empty: comma-separated groups of {', '.join(groups)}")
        for part in value.split(","):
            if part not in groups:
                fail("include", f"{part[:30]!r} is not a field group: must be among {', '.join(groups)}")
            asked.add(part)
    return tuple(g for g in groups if g in asked)


def coin_id(value: str) -> str | None:
    """A path coin id, or None when it cannot be a coin id (→ 404)."""
    return value if _ID_RE.match(value or "") else None


def offset(query) -> int | None:
    """The deprecated ``offset`` alias of cursor paging (None when absent): rows skipped (after the
    cursor's position when both are given)."""
    if _get(query, "offset") is None:
        return None
    return integer(query, "offset", default=0, minimum=0, maximum=MAX_OFFSET)


# --- cursors: opaque, URL-safe tokens for "continue after this row" -----------------------------
NOT_A_CURSOR = "is not a cursor returned by this API"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(raw: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,2000}", raw):
        fail("cursor", NOT_A_CURSOR)
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        fail("cursor", NOT_A_CURSOR)


@dataclass(frozen=True)
class TimeCursor:
    order: str  # "asc" | "desc"
    after_us: int  # epoch microseconds of the last row returned


def encode_time_cursor(order: str, t: datetime) -> str:
    us = int(t.timestamp() * 1_000_000)
    return _b64(f"t1:{order}:{us}".encode())


def time_cursor(query, *, order: str) -> TimeCursor | None:
    raw = _get(query, "cursor")
    if raw is None:
        return None
    try:
        version, cursor_order, us = _unb64(raw).decode().split(":")
        value = int(us)
    except (ValueError, UnicodeDecodeError):
        fail("cursor", NOT_A_CURSOR)
    if version != "t1" or cursor_order not in ("asc", "desc"):
        fail("cursor", NOT_A_CURSOR)
    if cursor_order != order:
        fail("cursor", "was issued for the other order; keep `order` unchanged while paging")
    if not int(MIN_TIME.timestamp() * 1e6) <= value <= int(MAX_TIME.timestamp() * 1e6):
        fail("cursor", NOT_A_CURSOR)
    return TimeCursor(cursor_order, value)


#: What a keyset cursor's sort-key values may be: a number or null ("num"), a coin id ("id"), an int.
KeySpec = tuple[str, ...]


def encode_key_cursor(kind: str, context: list[Any], key: list[Any]) -> str:
    """A keyset cursor: the list kind, the parameters that fix the order (``context``) and the sort
    key of the last row returned (its values, then the coin id as the tiebreaker)."""
    return _b64(orjson.dumps(["c1", kind, context, key]))


def key_cursor(query, *, kind: str, context: list[Any], spec: KeySpec) -> list[Any] | None:
    """The sort key carried by ``cursor`` (None when absent), checked against ``kind``/``context``
    and the types in ``spec``: anything else is a 400 naming ``cursor``."""
    raw = _get(query, "cursor")
    if raw is None:
        return None
    try:
        doc = orjson.loads(_unb64(raw))
    except orjson.JSONDecodeError:
        fail("cursor", NOT_A_CURSOR)
    if not (isinstance(doc, list) and len(doc) == 4 and doc[0] == "c1" and doc[1] == kind):
        fail("cursor", NOT_A_CURSOR)
    if doc[2] != context:
        fail("cursor", "was issued for other ordering parameters; keep them unchanged while paging")
    key = doc[3]
    if not (isinstance(key, list) and len(key) == len(spec)):
        fail("cursor", NOT_A_CURSOR)
    for value, want in zip(key, spec, strict=True):
        ok = (
            (
                want == "num"
                and (value is None or (isinstance(value, int | float) and not isinstance(value, bool)))
            )
            or (want == "int" and isinstance(value, int) and not isinstance(value, bool))
            or (want == "id" and isinstance(value, str) and coin_id(value) is not None)
        )
        if not ok:
            fail("cursor", NOT_A_CURSOR)
    return key
