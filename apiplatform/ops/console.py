"""The admin's operations console (docs/operations.md, "The admin as an operations console"): what its
pages show, composed from the owning apps' selectors (the same readings as ``GET /metrics`` and
``manage.py doctor``). Views in :mod:`apiplatform.ops.views` only render these.

A section whose dependency fails (Redis down, say) carries its error instead of breaking the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from django.conf import settings

from apiplatform.jobs import selectors as jobs_selectors
from apiplatform.ops import charts
from apiplatform.ops.doctor import FLUSH_LAG_PERIODS, INGESTION_LAG_BUCKETS, INGESTION_LAG_GRACE
from billing import metering
from billing import selectors as billing_selectors
from ingestion import selectors as ingestion_selectors
from ingestion.models import QualityFlag
from marketdata import selectors as marketdata_selectors
from marketdata.models import TIMEFRAME_DELTA

logger = logging.getLogger(__name__)

#: The failures and dead letters the overview lists (the counts cover everything).
LIST_LIMIT = 50
FAILURES_SINCE = timedelta(hours=24)

T = TypeVar("T")


@dataclass(frozen=True)
class Section(Generic[T]):
    value: T | None
    error: str = ""


def _read(name: str, fn: Callable[[], T]) -> Section[T]:
    try:
        return Section(fn())
    except Exception as exc:  # one unreachable dependency must not hide the rest of the console
        logger.warning("operations console: %s unavailable", name, exc_info=True)
        return Section(None, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class FreshnessRow:
    timeframe: str
    newest_end: datetime | None
    lag: timedelta | None
    limit: timedelta  # the doctor's failing threshold for this timeframe
    coins_behind: int
    coins: int

    @property
    def late(self) -> bool:
        return self.lag is None or self.lag > self.limit

    @property
    def lag_buckets(self) -> float | None:
        return self.lag / TIMEFRAME_DELTA[self.timeframe] if self.lag is not None else None


def freshness(*, now: datetime) -> list[FreshnessRow]:
    return [
        FreshnessRow(
            lag.timeframe,
            lag.newest_end,
            lag.lag,
            TIMEFRAME_DELTA[lag.timeframe] * INGESTION_LAG_BUCKETS + INGESTION_LAG_GRACE,
            lag.coins_behind,
            lag.coins,
        )
        for lag in marketdata_selectors.candles_lag(now=now)
    ]


def freshness_chart(rows: list[FreshnessRow]) -> str:
    """Lag per timeframe in buckets of the timeframe (comparable across timeframes), the dashed line at
    the doctor's limit."""
    bars = [(row.timeframe, row.lag_buckets) for row in rows]
    return charts.bar_chart(
        bars, title="Ingestion lag per timeframe, in buckets", unit=" buckets", limit=INGESTION_LAG_BUCKETS
    )


def overview(*, now: datetime) -> dict[str, Any]:
    """Everything the overview page shows (template context)."""
    fresh = _read("freshness", lambda: freshness(now=now))
    failed = jobs_selectors.job_runs_failed(since=now - FAILURES_SINCE, limit=LIST_LIMIT)
    flags_by_kind, flags = ingestion_selectors.quality_flags_open(limit=LIST_LIMIT)
    letters = jobs_selectors.dead_letters_pending(limit=LIST_LIMIT)
    groups = jobs_selectors.dead_letters_waiting()
    return {
        "now": now,
        "freshness": fresh,
        "freshness_chart": freshness_chart(fresh.value) if fresh.value else "",
        "schedules": jobs_selectors.schedules_state(),
        "failures_count": failed[0],
        "failures": failed[1],
        "failures_since": now - FAILURES_SINCE,
        "dead_letter_groups": groups,
        "dead_letters_total": sum(g.waiting for g in groups),
        "dead_letters": letters,
        "flags_by_kind": sorted(flags_by_kind.items()),
        "flags_open": sum(flags_by_kind.values()),
        "flags": flags,
        "stale_flags": ingestion_selectors.quality_flags_open(kind=QualityFlag.Kind.STALE, limit=LIST_LIMIT)[
            1
        ],
        "upstream": _read("upstream", ingestion_selectors.upstream_state),
        "usage_flush": _read("usage flush", lambda: metering.usage_flush_lag(now=now)),
        "usage_flush_limit": timedelta(seconds=settings.BILLING_USAGE_FLUSH_SECONDS * FLUSH_LAG_PERIODS),
        "stripe": billing_selectors.stripe_webhook_state(),
        "list_limit": LIST_LIMIT,
    }


# --- the coin page ----------------------------------------------------------------------------------
#: How far back the coin page counts candles and looks for gaps, per timeframe (each a bounded read of
#: the series' primary key).
COIN_WINDOWS: dict[str, timedelta] = {
    "1m": timedelta(days=1),
    "5m": timedelta(days=3),
    "15m": timedelta(days=7),
    "1h": timedelta(days=30),
    "1d": timedelta(days=365),
}
#: Gaps listed per timeframe (the missing-bucket count covers them all).
GAPS_LISTED = 20
SNAPSHOT_FIELDS = (
    "price", "market_cap", "rank", "volume_24h", "high_24h", "low_24h", "change_24h_pct", "last_updated",
    "fetched_at", *marketdata_selectors.SNAPSHOT_DETAIL_FIELDS,
)  # fmt: skip


@dataclass(frozen=True)
class SeriesWindow:
    timeframe: str
    start: datetime
    end: datetime  # the start of the bucket in progress: closed buckets only
    candles: int
    expected: int  # buckets in [start, end)
    missing: int  # buckets inside gaps (a series' true start is no gap)
    gaps: list[tuple[datetime, datetime]]  # the first GAPS_LISTED


def _floor(t: datetime, delta: timedelta) -> datetime:
    step = delta.total_seconds()
    return datetime.fromtimestamp(t.timestamp() // step * step, t.tzinfo)


def coin_series(*, coin_id: int, now: datetime) -> list[SeriesWindow]:
    """Candle count and gaps of each timeframe over its COIN_WINDOWS window (2 queries each)."""
    out = []
    for tf, window in COIN_WINDOWS.items():
        delta = TIMEFRAME_DELTA[tf]
        end = _floor(now, delta)
        start = end - window
        count = marketdata_selectors.candles_count(coin_id=coin_id, timeframe=tf, start=start, end=end)
        gaps = [
            (g_start, g_end)
            for _, g_start, g_end in marketdata_selectors.candle_gaps(
                coin_ids=[coin_id], timeframe=tf, start=start, end=end, anchor_from=start - window
            )
        ]
        missing = sum(int((g_end - g_start) / delta) for g_start, g_end in gaps)
        out.append(SeriesWindow(tf, start, end, count, int(window / delta), missing, gaps[:GAPS_LISTED]))
    return out


def coin_page(*, upstream_id: str, now: datetime) -> dict[str, Any] | None:
    """Everything the coin page shows, None for an unknown coin."""
    detail = marketdata_selectors.coin_detail(upstream_id)
    ref = marketdata_selectors.coin_ref(upstream_id)
    if detail is None or ref is None:
        return None
    coin_id = ref[0]
    upstream, symbol, name, active, first_seen, last_seen, *snapshot = detail
    return {
        "now": now,
        "coin": {
            "id": coin_id,
            "upstream_id": upstream,
            "symbol": symbol,
            "name": name,
            "active": active,
            "first_seen": first_seen,
            "last_seen": last_seen,
        },
        "snapshot": (  # fetched_at is set on every stored snapshot
            dict(zip(SNAPSHOT_FIELDS, snapshot, strict=True)) if snapshot[8] is not None else None
        ),
        "series": coin_series(coin_id=coin_id, now=now),
        "flags": ingestion_selectors.quality_flags_recent(coin_id=coin_id),
        "gaps_listed": GAPS_LISTED,
    }


# --- the usage page ---------------------------------------------------------------------------------
USAGE_DAYS = 30
TOP_TENANTS = 10


def _share(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _daily_bars(days: list[date], per_day: dict[date, dict[str, int]]) -> list[tuple[str, float]]:
    return [(day.strftime("%m-%d"), float(sum(per_day.get(day, {}).values()))) for day in days]


def usage(*, today: date) -> dict[str, Any]:
    """Everything the usage page shows, over the USAGE_DAYS days up to ``today`` (UTC).

    Metering counts the gateway's refusals with their reason (``UsageRecord.refusal``: rate limited,
    quota exceeded, not in the plan) inside the 4xx class, so their shares are exact; usage metered
    before that column existed has its refusals among the other 4xx."""
    start = today - timedelta(days=USAGE_DAYS - 1)
    days = [start + timedelta(days=i) for i in range(USAGE_DAYS)]
    total = billing_selectors.usage_daily(start=start, end=today).get(None, {})
    top = billing_selectors.usage_top_organizations(start=start, end=today, limit=TOP_TENANTS)
    daily = billing_selectors.usage_daily(
        start=start, end=today, organization_ids=[t.organization_id for t in top]
    )
    requests = sum(sum(v.values()) for v in total.values())
    refusals = billing_selectors.usage_refusals(start=start, end=today)
    by_status = {s: sum(v.get(s, 0) for v in total.values()) for s in billing_selectors.STATUS_CLASSES}
    tenants = [
        {
            "usage": t,
            "share_4xx": _share(t.by_status.get("4xx", 0), t.requests),
            "share_rate_limited": _share(t.by_refusal.get("rate-limited", 0), t.requests),
            "share_quota_exceeded": _share(t.by_refusal.get("quota-exceeded", 0), t.requests),
            "chart": charts.bar_chart(
                _daily_bars(days, daily.get(t.organization_id, {})),
                title=f"Requests per day of {t.organization}",
                width=360,
                height=90,
            ),
        }
        for t in top
    ]
    mix = billing_selectors.plan_mix()
    return {
        "start": start,
        "end": today,
        "days": USAGE_DAYS,
        "requests": requests,
        "by_status": by_status,
        "share_4xx": _share(by_status["4xx"], requests),
        "share_5xx": _share(by_status["5xx"], requests),
        "refusals": refusals,
        "share_rate_limited": _share(refusals.get("rate-limited", 0), requests),
        "share_quota_exceeded": _share(refusals.get("quota-exceeded", 0), requests),
        "chart": charts.bar_chart(_daily_bars(days, total), title="Requests per day, every tenant"),
        "tenants": tenants,
        "plans": mix,
        "revenue_cents": sum(p.monthly_revenue_cents for p in mix),
        "currency": settings.STRIPE_CURRENCY.upper(),
    }
