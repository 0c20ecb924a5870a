"""Benchmark of the 1m screener refresh (marketdata.screener.latest_indicators_refresh) end to end,
with where the time goes: the DB read, the indicator computation, the upsert.

    .venv/bin/python bench/bench_screener.py [--coins 2000] [--minutes 1000] [--rounds 3]

Runs on the benchmark database (bench/benchdb.py, ``BENCH_DATABASE_URL``); fills it first through the
write path (``services.candles_upsert``) when it holds fewer than ``--coins`` coins with ``--minutes``
closed 1m candles each (a random walk per coin, a few coins priced ~1e-9). Prints per round the end-to-end
time and its parts (read, compute, write), and in the same run the read used before issue 16 (the
last HISTORY candles of every coin through a LATERAL index scan, as float8[] arrays parsed into
Python lists) on the same data, for the ratio. The computation's own ratio to TA-Lib alone is
bench/bench_indicators.py's.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from benchdb import BENCH_DB, create_database, use_bench_database

use_bench_database()


def fill(coins: int, minutes: int) -> datetime:
    """Fill (if needed); returns the refresh time: one minute after the newest stored candle."""
    from django.db import connection

    from marketdata import partitions, services

    coin_map = services.coins_upsert(
        coins=[services.CoinIn(f"bench-{i}", f"b{i}", f"Bench {i}") for i in range(coins)]
    )
    ids = sorted(coin_map.values())[:coins]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM marketdata_candle WHERE timeframe = '1m' AND closed AND coin_id = ANY(%s)",
            [ids],
        )
        if cur.fetchone()[0] >= coins * minutes:
            cur.execute("SELECT max(bucket_start) FROM marketdata_candle WHERE timeframe = '1m' AND closed")
            return cur.fetchone()[0] + timedelta(minutes=2)
    partitions.partitions_ensure(timeframe="1m", start=start, end=now + timedelta(days=1))
    times = [start + timedelta(minutes=m) for m in range(minutes)]
    rng = np.random.default_rng(11)
    per_call = max(1, 100_000 // minutes)
    t = time.perf_counter()
    for lo in range(0, coins, per_call):
        rows = []
        for cid in ids[lo : lo + per_call]:
            scale = 1e-9 if cid % 100 == 0 else float(rng.uniform(0.01, 50_000))
            close = scale * np.exp(np.cumsum(rng.normal(0, 0.001, minutes)))
            high = close * (1 + rng.uniform(0, 0.001, minutes))
            low = close * (1 - rng.uniform(0, 0.001, minutes))
            vol = rng.uniform(1e5, 1e9, minutes)
            rows += [
                services.CandleRow(cid, "1m", times[m], close[m], high[m], low[m], close[m], None, vol[m])
                for m in range(minutes)
            ]
        services.candles_upsert(rows=rows, source="bench", now=now + timedelta(minutes=1))
        print(
            f"  fill: {min(lo + per_call, coins)}/{coins} coins ({time.perf_counter() - t:.0f}s)", flush=True
        )
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE marketdata_candle_1m")
    return now + timedelta(minutes=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coins", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    from marketdata import screener

    call_command("migrate", verbosity=0)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}")
    print(f"database: {BENCH_DB.rsplit('@', 1)[-1]}")
    now = fill(args.coins, args.minutes)
    best, before = float("inf"), float("inf")
    for _ in range(args.rounds):
        result = screener.latest_indicators_refresh(timeframe="1m", now=now)
        parts = ", ".join(f"{k} {v:.3f} s" for k, v in result.parts.items())
        print(
            f"screener refresh 1m: {result.coins} coins from {result.rows_read:,} candles in "
            f"{result.seconds:.3f} s end to end ({parts})",
            flush=True,
        )
        best = min(best, result.seconds)
        t0 = time.perf_counter()
        old = old_read()
        before = min(before, time.perf_counter() - t0)
        print(f"  same data, the read before issue 16: {len(old)} coins in {before:.3f} s", flush=True)
    print(f"best end to end {best:.3f} s (target <= 1.5 s); best old read alone {before:.3f} s")


_OLD_READ = """
SELECT c.id, k.last, k.vol, k.h, k.l, k.c
FROM marketdata_coin c
CROSS JOIN LATERAL (
    SELECT max(bucket_start) AS last, (array_agg(volume_24h ORDER BY bucket_start DESC))[1] AS vol,
           array_agg(high ORDER BY bucket_start) AS h, array_agg(low ORDER BY bucket_start) AS l,
           array_agg(close ORDER BY bucket_start) AS c
    FROM (SELECT bucket_start, high, low, close, volume_24h FROM marketdata_candle x
          WHERE x.coin_id = c.id AND x.timeframe = '1m' AND x.closed
          ORDER BY x.bucket_start DESC LIMIT 600) w
) k
WHERE c.active AND k.last IS NOT NULL
ORDER BY c.id
"""


def old_read() -> list:
    """The screener's read before issue 16 (binary float8[] arrays, one LATERAL scan per coin)."""
    import psycopg
    from django.db import connection

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(_OLD_READ, binary=True)
        return [(r[0], np.asarray(r[3]), np.asarray(r[4]), np.asarray(r[5])) for r in cur.fetchall()]


if __name__ == "__main__":
    main()
