"""Typed records parsed from CoinGecko answers, and the result type carrying rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that failed validation: its position in the payload, why, and the raw value."""

    index: int
    reason: str
    raw: Any = None
    series: str = ""  # market_chart: "prices", "market_caps" or "total_volumes"; markets: the page


@dataclass(slots=True)
class ParseResult(Generic[T]):
    """Good records plus rejects: a bad record never stops the good ones of the same payload."""

    records: list[T] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    endpoint: str = ""
    calls: int = 0  # upstream calls made for this result (set where one result spans several)

    def extend(self, other: ParseResult[T]) -> None:
        self.records.extend(other.records)
        self.rejects.extend(other.rejects)
        self.calls += other.calls

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True, slots=True)
class CoinListItem:
    id: str
    symbol: str
    name: str
    platforms: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class MarketRecord:
    """One item of /coins/markets. ``last_updated`` is when the upstream last refreshed the coin."""

    id: str
    symbol: str
    name: str
    current_price: float
    last_updated: datetime
    market_cap: float | None
    market_cap_rank: int | None
    total_volume: float | None  # rolling 24-hour volume, not a per-candle volume
    fully_diluted_valuation: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    price_change_24h: float | None = None
    price_change_percentage_24h: float | None = None
    market_cap_change_24h: float | None = None
    market_cap_change_percentage_24h: float | None = None
    circulating_supply: float | None = None
    total_supply: float | None = None
    max_supply: float | None = None
    ath: float | None = None
    ath_change_percentage: float | None = None
    ath_date: datetime | None = None
    atl: float | None = None
    atl_change_percentage: float | None = None
    atl_date: datetime | None = None
    image: str | None = None
    # present only when asked for with price_change_percentage=1h,7d,30d (…_in_currency in the answer)
    price_change_percentage_1h: float | None = None
    price_change_percentage_7d: float | None = None
    price_change_percentage_30d: float | None = None


@dataclass(frozen=True, slots=True)
class SimplePrice:
    id: str
    vs_currency: str
    price: float
    market_cap: float | None = None
    volume_24h: float | None = None  # rolling 24-hour volume
    change_24h: float | None = None  # percent
    last_updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExchangeRate:
    """One entry of /exchange_rates: ``value`` units of the currency per 1 BTC."""

    code: str  # "usd", "eur", "eth", ...
    name: str
    unit: str
    value: float
    type: str  # "fiat", "crypto" or "commodity"


@dataclass(frozen=True, slots=True)
class GlobalMarket:
    """/global: the whole crypto market as the upstream sees it (USD)."""

    updated_at: datetime
    total_market_cap: float
    total_volume: float
    btc_dominance: float | None  # % of the total market cap
    eth_dominance: float | None
    active_coins: int | None
    markets: int | None
    market_cap_change_24h_pct: float | None


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One timestamp of /market_chart(/range): price with market cap and rolling 24h volume, if
    present at the same timestamp. The last point of a chart is "now", not a bucket boundary."""

    time: datetime
    price: float
    market_cap: float | None = None
    total_volume: float | None = None


@dataclass(frozen=True, slots=True)
class OHLCRecord:
    """One /ohlc candle. CoinGecko's timestamp is the candle's CLOSE time (end of the bucket)."""

    close_time: datetime
    open: float
    high: float
    low: float
    close: float

    def bucket_start(self, candle: timedelta | int) -> datetime:
        return ohlc_bucket_start(self.close_time, candle)


def ohlc_bucket_start(close_time: datetime, candle: timedelta | int) -> datetime:
    """Bucket start of a CoinGecko candle from its close-time timestamp and candle size (timedelta or
    seconds): ``close_time - candle``."""
    size = candle if isinstance(candle, timedelta) else timedelta(seconds=candle)
    return close_time - size


def ohlc_candle_seconds(days: int | str | None = None, interval: str | None = None) -> int:
    """The candle size CoinGecko uses for /ohlc: ``interval`` daily/hourly wins; otherwise 1-2 days
    -> 30 minutes, 3-30 days -> 4 hours, 31+ days (and ``max``) -> 4 days."""
    if interval == "daily":
        return 86_400
    if interval == "hourly":
        return 3_600
    if days is None or str(days) == "max":
        return 4 * 86_400
    d = int(days)
    if d <= 2:
        return 1_800
    if d <= 30:
        return 4 * 3_600
    return 4 * 86_400


def utc_from_ms(ms: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms))
