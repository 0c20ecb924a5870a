"""Validation and parsing of CoinGecko payloads into typed records.

Each ``parse_*`` takes the decoded JSON and returns a ``ParseResult``: good records, plus a
``Reject(index, reason, raw)`` for every bad one (null, NaN, negative or non-numeric prices,
timestamps out of range, duplicates). Unsorted points are sorted. A payload that is not the expected
shape at all raises ``CoinGeckoShapeError`` naming the endpoint.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

from .errors import CoinGeckoShapeError
from .records import (
    ChartPoint,
    CoinListItem,
    ExchangeRate,
    GlobalMarket,
    MarketRecord,
    OHLCRecord,
    ParseResult,
    Reject,
    SimplePrice,
)

EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)  # nothing priced before the Bitcoin genesis block
EARLIEST_MS = int(EARLIEST.timestamp() * 1000)
FUTURE_SKEW = timedelta(hours=1)  # clocks differ; a later timestamp is out of range
OHLC_FUTURE_SKEW = timedelta(days=5)  # the still-open last candle carries its future close time


class _Invalid(Exception):
    pass


def _now(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now(tz=UTC)
    if isinstance(now, datetime):
        return now
    return datetime.fromtimestamp(now, tz=UTC)


@overload
def _number(value: Any, name: str, *, positive: bool = ..., nullable: Literal[False] = ...) -> float: ...
@overload
def _number(value: Any, name: str, *, positive: bool = ..., nullable: bool) -> float | None: ...
def _number(value: Any, name: str, *, positive: bool = False, nullable: bool = False) -> float | None:
    """A finite number (numeric strings from old answers accepted); None if null and nullable."""
    if value is None:
        if nullable:
            return None
        raise _Invalid(f"{name} is null")
    if isinstance(value, bool):
        raise _Invalid(f"{name} is not a number: {value!r}")
    if isinstance(value, int | float):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            raise _Invalid(f"{name} is not a number: {value!r}") from None
    else:
        raise _Invalid(f"{name} is not a number: {value!r}")
    if not math.isfinite(f):
        raise _Invalid(f"{name} is not finite: {value!r}")
    if positive and f <= 0:
        raise _Invalid(f"{name} must be positive: {value!r}")
    if f < 0 and not positive:
        raise _Invalid(f"{name} is negative: {value!r}")
    return f


def _optional(value: Any, *, signed: bool = False) -> float | None:
    """Optional informational numbers: anything unusable becomes None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or (f < 0 and not signed):
        return None
    return f


def _timestamp_ms(value: Any, name: str, now: datetime, skew: timedelta = FUTURE_SKEW) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{name} is not a millisecond timestamp: {value!r}")
    if not math.isfinite(value):
        raise _Invalid(f"{name} is not finite: {value!r}")
    ms = int(value)
    if ms < EARLIEST_MS:
        raise _Invalid(f"{name} out of range (before 2009): {value!r}")
    if ms > (now + skew).timestamp() * 1000:
        raise _Invalid(f"{name} out of range (in the future): {value!r}")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def parse_iso(value: Any, name: str, now: datetime | None = None) -> datetime:
    """ISO 8601 as CoinGecko prints it (``2023-01-08T16:49:40.132Z``), range-checked."""
    if not isinstance(value, str) or not value:
        raise _Invalid(f"{name} is not an ISO 8601 time: {value!r}")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"{name} is not an ISO 8601 time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt < EARLIEST:
        raise _Invalid(f"{name} out of range (before 2009): {value!r}")
    if now is not None and dt > now + FUTURE_SKEW:
        raise _Invalid(f"{name} out of range (in the future): {value!r}")
    return dt.astimezone(UTC)


def _optional_iso(value: Any, now: datetime | None = None) -> datetime | None:
    try:
        return parse_iso(value, "date", now)
    except _Invalid:
        return None


def _optional_positive(value: Any) -> float | None:
    """An optional price (all-time high/low): a positive finite number, else None."""
    f = _optional(value)
    return f if f else None


def _optional_change_pct(value: Any) -> float | None:
    """An optional price change in %: finite and not below -100 (a price cannot fall further)."""
    f = _optional(value, signed=True)
    return f if f is not None and f >= -100.0 else None


def _optional_count(value: Any) -> int | None:
    f = _optional(value)
    return int(f) if f is not None else None


MAX_IMAGE_URL = 500


def _optional_url(value: Any) -> str | None:
    """An optional image URL: absolute http(s), at most MAX_IMAGE_URL characters, no whitespace."""
    if not isinstance(value, str) or len(value) > MAX_IMAGE_URL:
        return None
    if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
        return None
    return value


def _require_list(payload: Any, endpoint: str) -> list:
    if not isinstance(payload, list):
        raise CoinGeckoShapeError(f"expected a JSON array, got {type(payload).__name__}", endpoint=endpoint)
    return payload


def _require_dict(payload: Any, endpoint: str) -> dict:
    if not isinstance(payload, dict):
        raise CoinGeckoShapeError(f"expected a JSON object, got {type(payload).__name__}", endpoint=endpoint)
    return payload


def _string(item: dict, key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{key} missing or not a string: {value!r}")
    return value


# --- endpoints -----------------------------------------------------------------------------------
def parse_ping(payload: Any) -> str:
    data = _require_dict(payload, "/ping")
    if not isinstance(data.get("gecko_says"), str):
        raise CoinGeckoShapeError("missing gecko_says", endpoint="/ping")
    return data["gecko_says"]


def parse_coins_list(payload: Any) -> ParseResult[CoinListItem]:
    endpoint = "/coins/list"
    result: ParseResult[CoinListItem] = ParseResult(endpoint=endpoint)
    seen: set[str] = set()
    for index, item in enumerate(_require_list(payload, endpoint)):
        try:
            if not isinstance(item, dict):
                raise _Invalid("item is not an object")
            cid = _string(item, "id")
            if cid in seen:
                raise _Invalid(f"duplicate id {cid!r}")
            symbol, name, platforms = item.get("symbol"), item.get("name"), item.get("platforms")
            result.records.append(
                CoinListItem(
                    cid,
                    symbol if isinstance(symbol, str) else "",
                    name if isinstance(name, str) else "",
                    platforms if isinstance(platforms, dict) else None,
                )
            )
            seen.add(cid)
        except _Invalid as exc:
            result.rejects.append(Reject(index, str(exc), item))
    return result


def parse_coins_markets(
    payload: Any, *, now: datetime | float | None = None, page: int | None = None
) -> ParseResult[MarketRecord]:
    """/coins/markets items. Rejected: missing id/symbol/name, current_price null/NaN/non-numeric/
    not positive, last_updated missing/unparseable/out of range, negative market_cap or
    total_volume, duplicate id. Other nullable fields that are unusable become None."""
    endpoint = "/coins/markets"
    when = _now(now)
    result: ParseResult[MarketRecord] = ParseResult(endpoint=endpoint)
    seen: set[str] = set()
    series = f"page {page}" if page is not None else ""
    for index, item in enumerate(_require_list(payload, endpoint)):
        try:
            if not isinstance(item, dict):
                raise _Invalid("item is not an object")
            cid = _string(item, "id")
            if cid in seen:
                raise _Invalid(f"duplicate id {cid!r}")
            rank = item.get("market_cap_rank")
            record = MarketRecord(
                id=cid,
                symbol=_string(item, "symbol"),
                name=_string(item, "name"),
                current_price=_number(item.get("current_price"), "current_price", positive=True),
                last_updated=parse_iso(item.get("last_updated"), "last_updated", when),
                market_cap=_number(item.get("market_cap"), "market_cap", nullable=True),
                market_cap_rank=rank
                if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0
                else None,
                total_volume=_number(item.get("total_volume"), "total_volume", nullable=True),
                fully_diluted_valuation=_optional(item.get("fully_diluted_valuation")),
                high_24h=_optional(item.get("high_24h")),
                low_24h=_optional(item.get("low_24h")),
                price_change_24h=_optional(item.get("price_change_24h"), signed=True),
                price_change_percentage_24h=_optional(item.get("price_change_percentage_24h"), signed=True),
                market_cap_change_24h=_optional(item.get("market_cap_change_24h"), signed=True),
                market_cap_change_percentage_24h=_optional(
                    item.get("market_cap_change_percentage_24h"), signed=True
                ),
                circulating_supply=_optional(item.get("circulating_supply")),
                total_supply=_optional(item.get("total_supply")),
                max_supply=_optional(item.get("max_supply")),
                ath=_optional_positive(item.get("ath")),
                ath_change_percentage=_optional_change_pct(item.get("ath_change_percentage")),
                ath_date=_optional_iso(item.get("ath_date"), when),
                atl=_optional_positive(item.get("atl")),
                atl_change_percentage=_optional(item.get("atl_change_percentage"), signed=True),
                atl_date=_optional_iso(item.get("atl_date"), when),
                image=_optional_url(item.get("image")),
                price_change_percentage_1h=_optional_change_pct(
                    item.get("price_change_percentage_1h_in_currency")
                ),
                price_change_percentage_7d=_optional_change_pct(
                    item.get("price_change_percentage_7d_in_currency")
                ),
                price_change_percentage_30d=_optional_change_pct(
                    item.get("price_change_percentage_30d_in_currency")
                ),
            )
            seen.add(cid)
            result.records.append(record)
        except _Invalid as exc:
            result.rejects.append(Reject(index, str(exc), item, series))
    return result


def parse_simple_price(
    payload: Any, vs_currency: str = "usd", *, now: datetime | float | None = None
) -> ParseResult[SimplePrice]:
    endpoint = "/simple/price"
    when = _now(now)
    result: ParseResult[SimplePrice] = ParseResult(endpoint=endpoint)
    vs = vs_currency.lower()
    for index, (cid, entry) in enumerate(_require_dict(payload, endpoint).items()):
        try:
            if not isinstance(entry, dict):
                raise _Invalid("entry is not an object")
            updated = entry.get("last_updated_at")
            updated_at = None
            if updated is not None:
                updated_at = _timestamp_ms(
                    _number(updated, "last_updated_at") * 1000, "last_updated_at", when
                )
            result.records.append(
                SimplePrice(
                    id=cid,
                    vs_currency=vs,
                    price=_number(entry.get(vs), vs, positive=True),
                    market_cap=_number(entry.get(f"{vs}_market_cap"), f"{vs}_market_cap", nullable=True),
                    volume_24h=_number(entry.get(f"{vs}_24h_vol"), f"{vs}_24h_vol", nullable=True),
                    change_24h=_optional(entry.get(f"{vs}_24h_change"), signed=True),
                    last_updated_at=updated_at,
                )
            )
        except _Invalid as exc:
            result.rejects.append(Reject(index, f"{cid}: {exc}", entry))
    return result


def _series(
    data: dict, name: str, endpoint: str, when: datetime, rejects: list[Reject], *, positive: bool
) -> dict[datetime, float]:
    raw = data.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise CoinGeckoShapeError(f"{name} is not an array", endpoint=endpoint)
    out: dict[datetime, float] = {}
    for index, point in enumerate(raw):
        try:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise _Invalid("point is not a [timestamp, value] pair")
            ts = _timestamp_ms(point[0], "timestamp", when)
            value = _number(point[1], name, positive=positive)
            if ts in out:
                raise _Invalid(f"duplicate timestamp {point[0]!r}")
            out[ts] = value
        except _Invalid as exc:
            rejects.append(Reject(index, str(exc), point, name))
    return out


def parse_market_chart(
    payload: Any, *, now: datetime | float | None = None, endpoint: str = "/coins/{id}/market_chart"
) -> ParseResult[ChartPoint]:
    """Merge prices, market_caps and total_volumes by timestamp into ChartPoints, oldest first.
    A bad price point is rejected (with series "prices"); a bad market cap/volume point is rejected
    in its series and leaves that field None."""
    when = _now(now)
    data = _require_dict(payload, endpoint)
    if "prices" not in data:
        raise CoinGeckoShapeError("missing 'prices'", endpoint=endpoint)
    result: ParseResult[ChartPoint] = ParseResult(endpoint=endpoint)
    prices = _series(data, "prices", endpoint, when, result.rejects, positive=True)
    caps = _series(data, "market_caps", endpoint, when, result.rejects, positive=False)
    vols = _series(data, "total_volumes", endpoint, when, result.rejects, positive=False)
    result.records = [ChartPoint(ts, prices[ts], caps.get(ts), vols.get(ts)) for ts in sorted(prices)]
    return result


def parse_ohlc(
    payload: Any, *, now: datetime | float | None = None, endpoint: str = "/coins/{id}/ohlc"
) -> ParseResult[OHLCRecord]:
    """[[close_time_ms, open, high, low, close], ...] -> OHLCRecords sorted by close time.
    Rejected: wrong length, bad numbers, high below open/close/low or low above open/close,
    timestamps out of range, duplicate timestamps."""
    when = _now(now)
    result: ParseResult[OHLCRecord] = ParseResult(endpoint=endpoint)
    seen: set[datetime] = set()
    for index, row in enumerate(_require_list(payload, endpoint)):
        try:
            if not isinstance(row, list | tuple) or len(row) != 5:
                raise _Invalid("candle is not [timestamp, open, high, low, close]")
            ts = _timestamp_ms(row[0], "timestamp", when, OHLC_FUTURE_SKEW)
            o, h, lo, c = (_number(v, n, positive=True) for v, n in zip(row[1:], "ohlc", strict=True))
            if h < max(o, c, lo) or lo > min(o, c):
                raise _Invalid(f"inconsistent candle: high {h} low {lo} open {o} close {c}")
            if ts in seen:
                raise _Invalid(f"duplicate timestamp {row[0]!r}")
            seen.add(ts)
            result.records.append(OHLCRecord(ts, o, h, lo, c))
        except _Invalid as exc:
            result.rejects.append(Reject(index, str(exc), row))
    result.records.sort(key=lambda r: r.close_time)
    return result


def parse_exchange_rates(payload: Any) -> ParseResult[ExchangeRate]:
    """/exchange_rates: ``{"rates": {code: {name, unit, value, type}}}`` (values per 1 BTC).
    Rejected: entries that are not objects or whose value is not a positive finite number."""
    endpoint = "/exchange_rates"
    data = _require_dict(payload, endpoint)
    rates = data.get("rates")
    if not isinstance(rates, dict):
        raise CoinGeckoShapeError("missing 'rates'", endpoint=endpoint)
    result: ParseResult[ExchangeRate] = ParseResult(endpoint=endpoint)
    for index, (code, entry) in enumerate(rates.items()):
        try:
            if not isinstance(entry, dict):
                raise _Invalid("entry is not an object")
            if not isinstance(code, str) or not code.isascii() or not code.isalnum() or len(code) > 10:
                raise _Invalid(f"bad currency code {code!r}")
            name, unit, kind = entry.get("name"), entry.get("unit"), entry.get("type")
            result.records.append(
                ExchangeRate(
                    code=code.lower(),
                    name=name if isinstance(name, str) else code.upper(),
                    unit=unit if isinstance(unit, str) else code.upper(),
                    value=_number(entry.get("value"), "value", positive=True),
                    type=kind if isinstance(kind, str) else "",
                )
            )
        except _Invalid as exc:
            result.rejects.append(Reject(index, f"{code}: {exc}", entry))
    return result


def parse_global(payload: Any, *, now: datetime | float | None = None) -> GlobalMarket:
    """/global: ``{"data": {total_market_cap: {usd…}, total_volume: {usd…}, market_cap_percentage,
    active_cryptocurrencies, markets, market_cap_change_percentage_24h_usd, updated_at}}``.
    A missing/invalid USD total market cap or volume, or ``updated_at``, is a shape error (there
    is only one record: nothing to keep)."""
    endpoint = "/global"
    when = _now(now)
    data = _require_dict(payload, endpoint).get("data")
    if not isinstance(data, dict):
        raise CoinGeckoShapeError("missing 'data'", endpoint=endpoint)
    try:
        caps, vols = data.get("total_market_cap"), data.get("total_volume")
        if not isinstance(caps, dict) or not isinstance(vols, dict):
            raise _Invalid("total_market_cap/total_volume are not objects")
        shares = data.get("market_cap_percentage")
        shares = shares if isinstance(shares, dict) else {}
        updated = _timestamp_ms(_number(data.get("updated_at"), "updated_at") * 1000, "updated_at", when)
        active, markets = data.get("active_cryptocurrencies"), data.get("markets")

        def share(code: str) -> float | None:
            f = _optional(shares.get(code))
            return f if f is not None and f <= 100.0 else None

        return GlobalMarket(
            updated_at=updated,
            total_market_cap=_number(caps.get("usd"), "total_market_cap.usd", positive=True),
            total_volume=_number(vols.get("usd"), "total_volume.usd"),
            btc_dominance=share("btc"),
            eth_dominance=share("eth"),
            active_coins=_optional_count(active),
            markets=_optional_count(markets),
            market_cap_change_24h_pct=_optional_change_pct(data.get("market_cap_change_percentage_24h_usd")),
        )
    except _Invalid as exc:
        raise CoinGeckoShapeError(str(exc), endpoint=endpoint) from None


def parse_error_body(payload: Any) -> tuple[int | None, str]:
    """(error_code, message) from any of CoinGecko's error shapes:
    ``{"status":{"error_code":..,"error_message":..}}``, ``{"error":{"status":{...}}}``,
    ``{"error":"coin not found"}``."""
    if not isinstance(payload, dict):
        return None, ""
    status = payload.get("status")
    err = payload.get("error")
    if isinstance(err, dict) and isinstance(err.get("status"), dict):
        status = err["status"]
    if isinstance(status, dict):
        code = status.get("error_code")
        return (code if isinstance(code, int) else None), str(status.get("error_message") or "")
    if isinstance(err, str):
        return None, err
    return None, ""


def now_ts() -> float:
    return time.time()
