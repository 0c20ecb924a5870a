"""Benchmark: one evaluation pass of 10,000 alerts after a refresh (issue 18: "within one second").

Runs against a throw-away test database (TEST_DATABASE_NAME, created and destroyed here). It writes
``--coins`` coins with snapshots, 70 minutes of 1m candles and 300 closed 1h candles each through
marketdata's write path, then ``--alerts`` alerts: 60 % price crossings, 20 % % change over 5m/1h,
20 % indicators (RSI 14 and the MACD signal cross on 1h candles), spread over the coins and over 20
organizations. It times :func:`marketdata.alerts.evaluation.alerts_evaluate`:

* ``first``: the first pass (every alert records its side; nothing fires);
* ``steady``: passes where prices moved a little and nothing crosses (the common minute);
* ``storm``: a pass where every price alert crosses at once and fires (6,000 deliveries recorded),
  committed, with its after-commit enqueue into the broker (``alerts.deliver_batch`` messages, sent
  to a bench-only queue ``bench_alerts`` that nobody consumes and that is deleted at the end);

and, as same-run baselines, ``floor``: one plain query reading the active alerts' rows (the least
any evaluation that reads its alerts from PostgreSQL must pay), and ``per-delivery enqueue``: the
same deliveries queued one ``alerts.deliver`` message each (how the storm was sent before the batch
task). The per-pass breakdown shows where the time goes. Deliveries are recorded and queued, not
sent. Needs CELERY_BROKER_URL (a helper's own Redis database).

    DEBUG=1 TEST_DATABASE_NAME=test_alerts_bench .venv/bin/python bench/bench_alerts.py [--alerts 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402


def _fill(n_coins: int, n_alerts: int, now: datetime) -> list[int]:
    from accounts.models import Organization
    from marketdata import services as market
    from marketdata.alerts.models import Alert, WebhookEndpoint

    ids = market.coins_upsert(
        coins=[market.CoinIn(f"coin-{i}", f"c{i}", f"Coin {i}") for i in range(n_coins)]
    )
    coins = [ids[f"coin-{i}"] for i in range(n_coins)]
    rng = random.Random(18)
    minute = now.replace(second=0, microsecond=0)
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = []
    for c in coins:
        price = 100.0
        for k in range(300):  # 1h closed candles
            close = price * (1 + rng.gauss(0, 0.01))
            rows.append(
                market.CandleRow(
                    c,
                    "1h",
                    hour - timedelta(hours=300 - k),
                    price,
                    max(price, close),
                    min(price, close),
                    close,
                    closed=True,
                )
            )
            price = close
        for k in range(70):  # 1m candles
            rows.append(
                market.CandleRow(c, "1m", minute - timedelta(minutes=70 - k), 100, 100, 100, 100, closed=True)
            )
    market.candles_upsert(rows=rows, source="bench")
    _prices(coins, 100.0, now)
    orgs = [Organization.objects.create(name=f"Bench {i}", slug=f"bench-{i}") for i in range(20)]
    endpoints = [
        WebhookEndpoint.objects.create(
            organization=o,
            url="https://hooks.example.com/bench",
            secret="whsec_b",  # noqa: S106  # a bench endpoint, never called
        )
        for o in orgs
    ]
    alerts = []
    for i in range(n_alerts):
        e = endpoints[i % len(endpoints)]
        fields = {"direction": "above", "level": 101.0 + (i % 7) * 0.1, "kind": "price"}
        if i % 10 in (6, 7):
            fields = {"kind": "change", "window": ("5m", "1h")[i % 2], "direction": "above", "level": 5.0}
        elif i % 10 == 8:
            fields = {
                "kind": "indicator",
                "indicator": "rsi",
                "timeframe": "1h",
                "direction": "above",
                "level": 70,
            }
        elif i % 10 == 9:
            fields = {
                "kind": "indicator",
                "indicator": "macd_signal_cross",
                "timeframe": "1h",
                "direction": "above",
                "level": 0.0,
            }
        alerts.append(
            Alert(organization_id=e.organization_id, endpoint=e, coin_id=coins[i % n_coins], **fields)
        )
    Alert.objects.bulk_create(alerts, batch_size=2000)
    return coins


def _prices(coins: list[int], price: float, now: datetime) -> None:
    from marketdata import services as market

    market.snapshots_upsert(
        rows=[market.SnapshotIn(c, price, None, None, None, None, None, None, now, now) for c in coins]
    )


def _pass(now: datetime):
    from marketdata.alerts.evaluation import alerts_evaluate

    with transaction.atomic():  # on_commit sends are dropped with the rollback: nothing is queued
        result = alerts_evaluate(now=now)
        transaction.set_rollback(True)
    return result


def _commit_pass(now: datetime):
    from unittest import mock

    from marketdata.alerts import services
    from marketdata.alerts.evaluation import alerts_evaluate

    with mock.patch.object(services, "deliveries_enqueue"):  # record the deliveries, queue nothing
        return alerts_evaluate(now=now)


BENCH_QUEUE = "bench_alerts"


def _storm_pass(now: datetime):
    """A committed pass whose after-commit enqueue really publishes, to the bench queue."""
    from unittest import mock

    from marketdata.alerts import tasks
    from marketdata.alerts.evaluation import alerts_evaluate

    publish = tasks.deliver_batch.apply_async
    with mock.patch.object(
        tasks.deliver_batch, "apply_async", lambda *a, **kw: publish(*a, queue=BENCH_QUEUE, **kw)
    ):
        return alerts_evaluate(now=now)


def _per_delivery_enqueue(delivery_ids: list[int]) -> float:
    """The baseline: one ``alerts.deliver`` message per delivery (the storm's enqueue before batching)."""
    from marketdata.alerts import tasks

    t = time.perf_counter()
    for pk in delivery_ids:
        tasks.deliver.apply_async(kwargs={"delivery_id": pk, "attempt": 1}, queue=BENCH_QUEUE)
    return time.perf_counter() - t


def _drop_bench_queue() -> None:
    import redis

    client = redis.Redis.from_url(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
    client.delete(BENCH_QUEUE, f"_kombu.binding.{BENCH_QUEUE}", f"_kombu.binding_permanent.{BENCH_QUEUE}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--coins", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        now = datetime.now(UTC)
        t = time.perf_counter()
        coins = _fill(args.coins, args.alerts, now)
        print(f"setup: {args.coins} coins, {args.alerts} alerts in {time.perf_counter() - t:.1f} s")
        first = _commit_pass(now)
        print(f"first  pass: {_ms(first.seconds)}  (alerts {first.alerts}, sides recorded {first.changed})")
        steady = []
        for k in range(args.runs):
            _prices(coins, 100.0 + 0.01 * k, now)
            steady.append(_pass(now + timedelta(seconds=k + 1)))
        med = statistics.median(r.seconds for r in steady)
        print(
            f"steady pass: {_ms(med)} median of {args.runs}, max {_ms(max(r.seconds for r in steady))}"
            f"  (fired {steady[-1].fired})"
        )
        print(
            "  breakdown (last):", ", ".join(f"{k} {_ms(v).strip()}" for k, v in steady[-1].timings.items())
        )
        _prices(coins, 102.0, now)
        storm = _storm_pass(now + timedelta(minutes=1))
        print(
            f"storm pass: {_ms(storm.seconds)}  (fired {storm.fired}: deliveries recorded, committed and "
            "queued in the pass)"
        )
        print("  breakdown:", ", ".join(f"{k} {_ms(v).strip()}" for k, v in storm.timings.items()))
        per_delivery = _per_delivery_enqueue(storm.delivery_ids)
        batched = storm.timings.get("enqueue", 0.0)
        print(
            f"enqueue of {storm.fired} deliveries: batched {_ms(batched)} vs per-delivery (baseline) "
            f"{_ms(per_delivery)} -> {per_delivery / max(batched, 1e-6):.0f}x; the storm with "
            f"per-delivery enqueue would take {_ms(storm.seconds - batched + per_delivery)}"
        )
        floors = []
        for _ in range(args.runs):
            t = time.perf_counter()
            with connection.cursor() as cur:
                cur.execute("SELECT * FROM alerts_alert WHERE active")
                cur.fetchall()
            floors.append(time.perf_counter() - t)
        floor = statistics.median(floors)
        print(f"floor (one SELECT of the alert rows): {_ms(floor)}")
        print(f"ratio steady/floor: {med / floor:.1f}x; storm/floor: {storm.seconds / floor:.1f}x")
        for label, seconds in (("first pass", first.seconds), ("steady median", med)):
            verdict = "OK" if seconds < 1.0 else "OVER"
            print(f"target: {args.alerts} alerts evaluated within 1 s of a refresh ({label}) -> {verdict}")
        storm_verdict = "OK" if storm.seconds < 1.0 else "OVER"
        print(f"storm ({storm.fired} firings recorded and queued in the pass) within 1 s -> {storm_verdict}")
    finally:
        _drop_bench_queue()
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
