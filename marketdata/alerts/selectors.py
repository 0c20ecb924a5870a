"""Reads of the alerts app: the active alerts of a refresh (one query), the market values they compare
(one query per kind), and the customer's lists."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import QuerySet

from apiplatform import redis_access
from marketdata import indicators
from marketdata.alerts import conditions
from marketdata.alerts.models import Alert, Delivery, DeliveryAttempt, WebhookEndpoint
from marketdata.screener import SCREENER_PARAMS


@dataclass(slots=True)
class ActiveAlert:
    """An active alert as evaluation needs it (no model instance: 10,000 of them per refresh)."""

    id: int
    organization_id: int
    endpoint_id: int
    coin_id: int
    kind: str
    direction: str
    level: float
    window: str
    indicator: str
    timeframe: str
    cooldown_seconds: int
    last_side: str
    last_fired_at: datetime | None
    name: str


@dataclass(slots=True)
class Firing:
    """An alert that fires in this evaluation, with what its delivery tells."""

    alert: ActiveAlert
    value: float
    previous_side: str
    price: float | None


_ACTIVE_FIELDS = (
    "id",
    "organization_id",
    "endpoint_id",
    "coin_id",
    "kind",
    "direction",
    "level",
    "window",
    "indicator",
    "timeframe",
    "cooldown_seconds",
    "last_side",
    "last_fired_at",
    "name",
)


def alerts_active() -> list[ActiveAlert]:
    """Every active alert (1 query, the partial index ``alert_active_coin``)."""
    rows = Alert.objects.filter(active=True).values_list(*_ACTIVE_FIELDS)
    return [ActiveAlert(*row) for row in rows]


def prices_now(*, coin_ids: list[int]) -> dict[int, float]:
    """coin id -> latest snapshot price (1 query)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coin_id, price FROM marketdata_marketsnapshot "
            "WHERE coin_id = ANY(%s) AND price IS NOT NULL",
            [coin_ids],
        )
        return dict(cur.fetchall())


def prices_at(*, coin_ids: list[int], at: datetime) -> dict[int, float]:
    """coin id -> close of the newest 1m candle that ended at or before ``at`` (within 15 minutes
    before it: a longer gap has no reference price), 1 query."""
    until = at - timedelta(minutes=1)  # bucket_start + 1m <= at
    with connection.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (coin_id) coin_id, close FROM marketdata_candle "
            "WHERE timeframe = '1m' AND coin_id = ANY(%s) AND bucket_start <= %s AND bucket_start > %s "
            "ORDER BY coin_id, bucket_start DESC",
            [coin_ids, until, until - timedelta(minutes=15)],
        )
        return dict(cur.fetchall())


_CLOSES_SQL = """
SELECT i.id, w.closes
FROM unnest(%(ids)s::int8[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT array_agg(close ORDER BY bucket_start) AS closes
    FROM (SELECT bucket_start, close FROM marketdata_candle x
          WHERE x.coin_id = i.id AND x.timeframe = %(tf)s AND x.closed
          ORDER BY x.bucket_start DESC LIMIT %(n)s) k
) w
WHERE w.closes IS NOT NULL
"""

_NEWEST_SQL = """
SELECT i.id, k.bucket_start, k.updated_at
FROM unnest(%(ids)s::int8[]) AS i(id)
CROSS JOIN LATERAL (
    SELECT bucket_start, updated_at FROM marketdata_candle x
    WHERE x.coin_id = i.id AND x.timeframe = %(tf)s AND x.closed
    ORDER BY x.bucket_start DESC LIMIT 1
) k
"""

#: Indicator values are cached (Redis, the default cache) per newest closed candle of a series:
#: they change only when a candle closes (or a closed one is corrected: its updated_at is in the key).
INDICATOR_CACHE_SECONDS = 2 * 24 * 3600


def _indicators_compute(
    *, coin_ids: list[int], timeframe: str, names: set[str]
) -> dict[int, dict[str, float]]:
    with connection.cursor() as cur:
        cur.execute(_CLOSES_SQL, {"ids": coin_ids, "tf": timeframe, "n": conditions.INDICATOR_HISTORY})
        rows = cur.fetchall()
    out: dict[int, dict[str, float]] = {}
    bases = {conditions.INDICATORS[name][0] for name in names}
    for coin_id, closes in rows:
        series = {"close": np.asarray(closes, dtype=np.float64)}
        computed = {
            base: indicators.compute(base, params=SCREENER_PARAMS[base], timeframe=timeframe, series=series)
            for base in bases
        }
        values: dict[str, float] = {}
        for name in names:
            base, output = conditions.INDICATORS[name]
            value = computed[base][output][-1]
            if not np.isnan(value):
                values[name] = float(value)
        out[coin_id] = values
    return out


def indicator_values(*, coin_ids: list[int], timeframe: str, names: set[str]) -> dict[tuple[str, int], float]:
    """(alert indicator name, coin id) -> value on the newest closed candle of ``timeframe``,
    computed by marketdata.indicators with the screener's parameters.

    One query finds each series' newest closed candle; values already computed for that candle come
    from the cache; the others are computed from one query reading their last closed candles."""
    with connection.cursor() as cur:
        cur.execute(_NEWEST_SQL, {"ids": coin_ids, "tf": timeframe})
        newest = {coin: (bucket, updated) for coin, bucket, updated in cur.fetchall()}
    names_key = ",".join(sorted(names))
    keys = {
        coin: f"alerts:ind:{timeframe}:{coin}:{bucket.timestamp():.0f}:{updated.timestamp():.6f}:{names_key}"
        for coin, (bucket, updated) in newest.items()
    }
    cached: dict[str, dict[str, float]] = {}
    with contextlib.suppress(*redis_access.ERRORS):  # Redis down: compute everything (slower, right)
        cached = cache.get_many(list(keys.values())) if keys else {}
    missing = [coin for coin, key in keys.items() if key not in cached]
    per_coin = {coin: cached[key] for coin, key in keys.items() if key in cached}
    if missing:
        computed = _indicators_compute(coin_ids=missing, timeframe=timeframe, names=names)
        with contextlib.suppress(*redis_access.ERRORS):
            cache.set_many({keys[c]: v for c, v in computed.items()}, timeout=INDICATOR_CACHE_SECONDS)
        per_coin.update(computed)
    return {(name, coin): value for coin, values in per_coin.items() for name, value in values.items()}


def coin_upstream_ids(*, coin_ids: list[int]) -> dict[int, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT id, upstream_id FROM marketdata_coin WHERE id = ANY(%s)", [coin_ids])
        return dict(cur.fetchall())


# --- the customer's lists (the views scope them by organization) ---------------------------------------
def alerts_of(*, organization_id: int) -> QuerySet[Alert]:
    return Alert.objects.filter(organization_id=organization_id).select_related("coin")


def endpoints_of(*, organization_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization_id=organization_id)


def deliveries_of(
    *,
    organization_id: int,
    alert_id: int | None = None,
    endpoint_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Delivery]:
    qs = Delivery.objects.filter(organization_id=organization_id)
    if alert_id is not None:
        qs = qs.filter(alert_id=alert_id)
    if endpoint_id is not None:
        qs = qs.filter(endpoint_id=endpoint_id)
    if status:
        qs = qs.filter(status=status)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return list(qs.order_by("-id")[:limit])


def attempts_of(*, delivery_id: int) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(delivery_id=delivery_id).order_by("number"))


def delivery_of(*, organization_id: int, delivery_id: int) -> Delivery | None:
    return Delivery.objects.filter(organization_id=organization_id, pk=delivery_id).first()
