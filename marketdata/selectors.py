"""Reads of the market data store (the public API and the admin build on these)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import F, Q, QuerySet

from marketdata.models import TIMEFRAME_DELTA, Candle, Coin, MarketSnapshot

#: Columns of a candle as returned by :func:`candles_range`, in order.
CANDLE_FIELDS = (
    "bucket_start",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "volume_24h",
    "market_cap",
    "closed",
    "filled",
)


def candles_range(
    *,
    coin_id: int,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 500,
    newest_first: bool = True,
    fields: tuple[str, ...] = CANDLE_FIELDS,
) -> list[tuple]:
    """Candles of one series with ``start <= bucket_start < end``, as tuples of ``fields``.

    Served by one (backward, for newest first) scan of the primary key index
    (coin_id, timeframe, bucket_start) per partition, stopping after ``limit`` rows.
    """
    qs = Candle.objects.filter(coin_id=coin_id, timeframe=timeframe)
    if start is not None:
        qs = qs.filter(bucket_start__gte=start)
    if end is not None:
        qs = qs.filter(bucket_start__lt=end)
    qs = qs.order_by("-bucket_start" if newest_first else "bucket_start")
    return list(qs.values_list(*fields)[:limit])


def candle_latest(*, coin_id: int, timeframe: str) -> Candle | None:
    return Candle.objects.filter(coin_id=coin_id, timeframe=timeframe).order_by("-bucket_start").first()


def coins_search(*, q: str | None = None, active: bool | None = None) -> QuerySet[Coin]:
    """Coins whose upstream id, symbol or name contains ``q`` (case-insensitive); exact matches first
    is left to the caller's ordering. Ordered by upstream id."""
    qs = Coin.objects.all()
    if q:
        qs = qs.filter(Q(upstream_id__icontains=q) | Q(symbol__iexact=q) | Q(name__icontains=q))
    if active is not None:
        qs = qs.filter(active=active)
    return qs.order_by("upstream_id")


def coin_by_upstream_id(upstream_id: str) -> Coin | None:
    return Coin.objects.filter(upstream_id=upstream_id).first()


def snapshots_latest(
    *, coin_ids: list[int] | None = None, order_by: str = "-market_cap", limit: int | None = None
) -> QuerySet[MarketSnapshot]:
    """Latest snapshots (with their coin), largest market cap first by default; nulls last."""
    qs = MarketSnapshot.objects.select_related("coin")
    if coin_ids is not None:
        qs = qs.filter(coin_id__in=coin_ids)
    field = order_by.lstrip("-")
    expr = F(field).desc(nulls_last=True) if order_by.startswith("-") else F(field).asc(nulls_last=True)
    qs = qs.order_by(expr, "coin_id")
    return qs[:limit] if limit else qs


def market_caps_at(*, at: datetime, timeframe: str = "1h") -> dict[int, float]:
    """Market cap of every coin as of the close of the last bucket of ``timeframe`` ending at or
    before ``at`` (from the candles' ``market_cap``; 1h and 1d have an index on bucket_start).
    Coins without a candle in that bucket are absent. Used for rankings at a past time."""
    from marketdata.services import bucket_floor

    bucket = bucket_floor(timeframe, at) - TIMEFRAME_DELTA[timeframe]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coin_id, market_cap FROM marketdata_candle WHERE timeframe = %s AND bucket_start = %s "
            "AND market_cap IS NOT NULL",
            [timeframe, bucket],
        )
        return dict(cur.fetchall())


def series_bounds(*, coin_id: int, timeframe: str) -> tuple[datetime, datetime] | None:
    """First and last bucket_start stored for one series (two index probes)."""
    qs = Candle.objects.filter(coin_id=coin_id, timeframe=timeframe)
    first = qs.order_by("bucket_start").values_list("bucket_start", flat=True).first()
    if first is None:
        return None
    last = qs.order_by("-bucket_start").values_list("bucket_start", flat=True).first()
    return first, last
