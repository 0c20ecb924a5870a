"""Reads of the ingestion app for operators (the admin's operations console): open quality flags and
the shared upstream (CoinGecko) budget and counters."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db.models import Count, F, Sum

from apiplatform import redis_access
from ingestion.coingecko.metrics import ClientMetrics
from ingestion.coingecko.ratelimit import RateBudget
from ingestion.models import QualityFlag


def quality_flags_open(
    *, coin_id: int | None = None, kind: str | None = None, limit: int = 50
) -> tuple[dict[str, int], list[QualityFlag]]:
    """Unresolved quality flags (of one coin, of one kind if given): (count by kind, the newest
    ``limit`` with their coin) (2 queries over the partial index of open flags)."""
    qs = QualityFlag.objects.filter(resolved_at=None)
    if coin_id is not None:
        qs = qs.filter(coin_id=coin_id)
    if kind is not None:
        qs = qs.filter(kind=kind)
    by_kind = dict(qs.values_list("kind").annotate(n=Count("pk")).order_by())
    return by_kind, list(qs.select_related("coin").order_by("-detected_at")[:limit])


class OpenFlags(NamedTuple):
    kind: str
    timeframe: str
    flags: int  # unresolved flags of this kind and timeframe
    span: timedelta  # the time their ranges cover together (buckets = span / the timeframe's bucket)


def quality_flags_open_by_timeframe() -> list[OpenFlags]:
    """Unresolved quality flags by kind and timeframe, with the time their ranges cover (1 query;
    ``GET /metrics``)."""
    rows = (
        QualityFlag.objects.filter(resolved_at__isnull=True)
        .values_list("kind", "timeframe")
        .annotate(n=Count("pk"), span=Sum(F("range_end") - F("range_start")))
        .order_by()
    )
    return [OpenFlags(kind, tf, n, span or timedelta(0)) for kind, tf, n, span in rows]


def quality_flags_recent(*, coin_id: int, limit: int = 20) -> list[QualityFlag]:
    """The newest flags of one coin, open or resolved (1 query)."""
    return list(QualityFlag.objects.filter(coin_id=coin_id).order_by("-detected_at")[:limit])


class UpstreamState(NamedTuple):
    budget_used: int  # calls granted in the current budget window (all workers)
    budget_limit: int  # calls allowed per window
    window_seconds: float
    paused_seconds: float  # every worker holds off this long after a 429 (0: not paused)
    totals: dict[str, int]  # the shared client counters since they were last reset (calls, rate_limited...)


def upstream_state() -> UpstreamState:
    """The shared CoinGecko budget and client counters, as every worker sees them (3 Redis round trips,
    through the ``ingestion`` connection of apiplatform.redis_access)."""
    r = redis_access.client("ingestion")
    budget = RateBudget(
        r,
        limit=settings.COINGECKO_RATE_LIMIT_PER_MIN,
        window=settings.COINGECKO_RATE_WINDOW,
        key=redis_access.key("cg", "budget"),
    )
    totals = ClientMetrics(r, redis_access.key("cg", "metrics")).shared()
    return UpstreamState(budget.in_window(), budget.limit, budget.window, budget.paused_for(), totals)
