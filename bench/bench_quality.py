"""Benchmark: the periodic data-quality check on a realistic window.

Creates N coins with ~3.5 h of 1m candles each (the 1m windows of the missing and jump checks),
injects one gap and one spike into every 50th coin, then times ``ingestion.quality.run_checks``
(no re-fetch enqueued): the first run (finds and records flags) and a second run (idempotent:
nothing new). Prints seconds, candles scanned per second, and found vs injected.

It runs against a throw-away test database (TEST_DATABASE_NAME, created and destroyed here):

    DEBUG=1 TEST_DATABASE_NAME=test_cs_bench_quality REDIS_URL=redis://127.0.0.1:6379/7 \
        .venv/bin/python bench/bench_quality.py [--coins 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")

import django

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, default=2000)
    parser.add_argument("--minutes", type=int, default=210)
    args = parser.parse_args()

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args.coins, args.minutes)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(n_coins: int, minutes: int) -> None:
    from ingestion import quality
    from ingestion.models import QualityFlag
    from marketdata.services import (
        CandleRow,
        CoinIn,
        SnapshotIn,
        candles_upsert,
        coins_upsert,
        snapshots_upsert,
    )

    now = timezone.now().replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes)
    ids = coins_upsert(
        coins=[CoinIn(f"coin-{i}", f"c{i}", f"Coin {i}") for i in range(n_coins)], seen_at=start
    )
    snapshots_upsert(
        rows=[SnapshotIn(cid, 1.0, 1e9, None, 1e6, None, None, None, now, now) for cid in ids.values()]
    )
    rng = np.random.default_rng(1)
    injected_gaps = injected_spikes = 0
    rows: list[CandleRow] = []
    t0 = time.perf_counter()
    for k, cid in enumerate(ids.values()):
        closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, minutes)))
        skip: set[int] = set()
        spike = -1
        if k % 50 == 0:
            g = int(rng.integers(minutes // 2, minutes - 20))
            skip = set(range(g, g + 3))
            spike = g + 10
            injected_gaps += 1
            injected_spikes += 1
        prev = closes[0]
        for i in range(minutes - 1):  # the current minute is still open
            c = float(closes[i]) * (1.3 if i == spike else 1.0)
            o = float(prev)
            prev = closes[i]
            if i in skip:
                continue
            rows.append(CandleRow(cid, "1m", start + timedelta(minutes=i), o, max(o, c), min(o, c), c))
        if len(rows) > 200_000:
            candles_upsert(rows=rows, source="bench")
            rows = []
    if rows:
        candles_upsert(rows=rows, source="bench")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle")
        stored = cur.fetchone()[0]
        cur.execute("ANALYZE marketdata_candle")
    print(f"setup: {n_coins} coins, {stored} 1m candles written in {time.perf_counter() - t0:.1f} s")

    for label in ("first run", "second run"):
        t = time.perf_counter()
        result = quality.run_checks(now=now + timedelta(minutes=1), schedule_refetch=False)
        elapsed = time.perf_counter() - t
        print(
            f"{label}: {elapsed:.2f} s ({stored / elapsed:,.0f} candles/s): found {result.found}, "
            f"new {result.new}, by kind {result.by_kind}"
        )
    kinds = dict(
        QualityFlag.objects.values_list("kind")
        .annotate(n=django.db.models.Count("id"))
        .values_list("kind", "n")
    )
    print(f"injected: {injected_gaps} gaps, {injected_spikes} spikes; flags: {kinds}")
    coin_ids = list(ids.values())
    for name, fn in (
        (
            "missing (1m)",
            lambda: quality.find_missing(
                now=now, coin_ids=coin_ids, timeframe="1m", lookback=timedelta(hours=3)
            ),
        ),
        (
            "jumps (1m)",
            lambda: quality.find_jumps(
                now=now, coin_ids=coin_ids, timeframe="1m", lookback=timedelta(hours=3)
            ),
        ),
        ("stale", lambda: quality.find_stale(now=now, coin_ids=coin_ids)),
    ):
        t = time.perf_counter()
        fn()
        print(f"  {name}: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
