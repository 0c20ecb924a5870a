"""Evaluation of every active alert after a refresh wrote new prices and candles.

One pass (:func:`alerts_evaluate`), run by the ``alerts.evaluate`` task that the ingestion write cycle
queues when its transaction commits (:mod:`marketdata.alerts.hooks`):

1. the active alerts, all of them, in one query, grouped by what they compare;
2. the values: latest prices (1 query), the reference price of each % change window (1 query per
   window used), the indicators of each timeframe used (1 query per timeframe, computed in numpy);
3. the crossing rule per alert (pure Python); only alerts whose side changed are written back
   (one UPDATE), and each firing becomes a recorded delivery (one INSERT); after commit their first
   attempts are queued together (``alerts.deliver_batch``: one broker message per 2,000 deliveries).

Passes never overlap (a transaction-level advisory lock), so an alert cannot fire twice for one
crossing even when two refreshes finish together.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from django.db import connection, transaction
from django.utils import timezone

from marketdata.alerts import conditions, selectors, services
from marketdata.alerts.selectors import ActiveAlert, Firing

logger = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of the evaluation pass ("alerts" in ASCII).
_LOCK_KEY = 0x616C65727473


@dataclass
class EvaluationResult:
    alerts: int = 0
    evaluated: int = 0  # alerts that had a value to compare
    changed: int = 0
    fired: int = 0
    suppressed: int = 0  # crossings inside a cooldown
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    delivery_ids: list[int] = field(default_factory=list)


def _values(
    alerts: list[ActiveAlert], now: datetime, timings: dict[str, float]
) -> tuple[dict[int, float], dict[int, float]]:
    """(alert id -> the value it compares, coin id -> latest price); alerts without data are left out."""
    coins = sorted({a.coin_id for a in alerts})
    began = time.monotonic()
    prices = selectors.prices_now(coin_ids=coins)
    timings["prices"] = time.monotonic() - began
    by_window: dict[str, set[int]] = defaultdict(set)
    by_timeframe: dict[str, tuple[set[int], set[str]]] = {}
    for a in alerts:
        if a.kind == "change":
            by_window[a.window].add(a.coin_id)
        elif a.kind == "indicator":
            coin_set, names = by_timeframe.setdefault(a.timeframe, (set(), set()))
            coin_set.add(a.coin_id)
            names.add(a.indicator)
    began = time.monotonic()
    references = {
        window: selectors.prices_at(coin_ids=sorted(ids), at=now - conditions.WINDOWS[window])
        for window, ids in by_window.items()
    }
    timings["change_windows"] = time.monotonic() - began
    began = time.monotonic()
    indicator_values = {
        tf: selectors.indicator_values(coin_ids=sorted(ids), timeframe=tf, names=names)
        for tf, (ids, names) in by_timeframe.items()
    }
    timings["indicators"] = time.monotonic() - began
    out: dict[int, float] = {}
    for a in alerts:
        value: float | None = None
        if a.kind == "price":
            value = prices.get(a.coin_id)
        elif a.kind == "change":
            ref, price = references[a.window].get(a.coin_id), prices.get(a.coin_id)
            if ref and price is not None:
                value = (price / ref - 1.0) * 100.0
        else:
            value = indicator_values[a.timeframe].get((a.indicator, a.coin_id))
        if value is not None:
            out[a.id] = value
    return out, prices


def decide(
    alerts: list[ActiveAlert], values: dict[int, float], prices: dict[int, float], now: datetime
) -> tuple[list[tuple[int, str, float]], list[Firing], int]:
    """The crossing rule: (side changes, firings, crossings suppressed by a cooldown).

    An alert fires when its value moves to ``direction``'s side from the other side; the first value
    an alert ever sees only sets its side. A crossing inside the cooldown moves the side (so it
    takes a new crossing to fire) but sends nothing."""
    changes: list[tuple[int, str, float]] = []
    firings: list[Firing] = []
    suppressed = 0
    for a in alerts:
        value = values.get(a.id)
        if value is None:
            continue
        side = conditions.side_of(value, a.level, a.last_side)
        if not side or side == a.last_side:
            continue
        changes.append((a.id, side, value))
        if not a.last_side or side != a.direction:
            continue
        since = (now - a.last_fired_at).total_seconds() if a.last_fired_at is not None else None
        if a.cooldown_seconds and since is not None and since < a.cooldown_seconds:
            suppressed += 1
            continue
        firings.append(Firing(a, value, a.last_side, prices.get(a.coin_id)))
    return changes, firings, suppressed


def _write_state(changes: list[tuple[int, str, float]], fired_ids: list[int], now: datetime) -> None:
    if not changes:
        return
    ids, sides, values = (list(col) for col in zip(*changes, strict=True))
    fired_set = set(fired_ids)
    fired = [i in fired_set for i in ids]
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:  # binary parameters (%b): 10,000-element arrays
        cur.execute(
            "UPDATE alerts_alert a SET last_side = u.side, last_value = u.value, last_evaluated_at = %b, "
            "last_fired_at = CASE WHEN u.fired THEN %b ELSE a.last_fired_at END, "
            "fired_count = a.fired_count + CASE WHEN u.fired THEN 1 ELSE 0 END "
            "FROM unnest(%b::int8[], %b::text[], %b::float8[], %b::bool[]) AS u(id, side, value, fired) "
            "WHERE a.id = u.id",
            [now, now, ids, sides, values, fired],
        )


def _enqueue(result: EvaluationResult) -> None:
    """After commit: queue the first attempt of every delivery of the pass (a few broker messages)."""
    t = time.monotonic()
    services.deliveries_enqueue([(pk, 1) for pk in result.delivery_ids])
    result.timings["enqueue"] = time.monotonic() - t


def alerts_evaluate(*, now: datetime | None = None) -> EvaluationResult:
    """Evaluate every active alert against the latest values (see the module docstring)."""
    now = now or timezone.now()
    began = time.monotonic()
    result = EvaluationResult()
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        t = time.monotonic()
        alerts = selectors.alerts_active()
        result.timings["load"] = time.monotonic() - t
        result.alerts = len(alerts)
        if alerts:
            values, prices = _values(alerts, now, result.timings)
            result.evaluated = len(values)
            t = time.monotonic()
            changes, firings, result.suppressed = decide(alerts, values, prices, now)
            result.timings["decide"] = time.monotonic() - t
            t = time.monotonic()
            _write_state(changes, [f.alert.id for f in firings], now)
            result.delivery_ids = services.deliveries_create_for_firings(
                firings=firings, now=now, enqueue=False
            )
            result.timings["write"] = time.monotonic() - t
            result.changed, result.fired = len(changes), len(firings)
            if result.delivery_ids:
                transaction.on_commit(lambda: _enqueue(result))
        committing = time.monotonic()
    result.timings["commit"] = time.monotonic() - committing - result.timings.get("enqueue", 0.0)
    result.seconds = time.monotonic() - began
    if result.fired or result.seconds > 1.0:
        logger.info(
            "alerts evaluated: %d alerts, %d fired, %d suppressed in %.3fs",
            result.alerts,
            result.fired,
            result.suppressed,
            result.seconds,
        )
    return result
