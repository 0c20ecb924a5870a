"""Latency of the hot candle reads on the benchmark database filled by bench_write_path.py.

Measures p50/p99 of "N newest candles of one coin at one timeframe" through the selector
(`marketdata.selectors.candles_range`, what the API uses) and as raw SQL, for several limits, and
of a time-range read in the middle of the history (oldest first).

    .venv/bin/python bench/bench_write_path.py      # once: fills >= 10 M 1m candles
    .venv/bin/python bench/bench_candle_reads.py [--reads 2000]
Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/candlestack_bench).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta

import numpy as np
from benchdb import use_bench_database

use_bench_database()
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
os.environ.setdefault("ALLOWED_HOSTS", "localhost")


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    import django

    django.setup()
    from django.db import connection

    from marketdata import selectors

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle_1m")
        total = cur.fetchone()[0]
        cur.execute(
            "SELECT DISTINCT coin_id FROM marketdata_candle_1m_default UNION SELECT id FROM marketdata_coin"
        )
        coin_ids = [r[0] for r in cur.fetchall()]
    if total < 1_000_000:
        sys.exit("run bench/bench_write_path.py first (it fills the benchmark database)")
    print(f"1m candles stored: {total:,}; coins: {len(coin_ids):,}; reads per case: {args.reads}")
    rng = np.random.default_rng(1)

    def measure(label, fn):
        lat = []
        for cid in rng.choice(coin_ids, size=args.reads).tolist():
            t = time.perf_counter()
            fn(cid)
            lat.append((time.perf_counter() - t) * 1000)
        print(f"{label:<58} p50 {pct(lat, 50):6.2f} ms  p99 {pct(lat, 99):6.2f} ms")

    for limit in (100, 500, 5000):
        measure(
            f"selector: {limit} newest 1m candles of one coin",
            lambda cid, n=limit: selectors.candles_range(coin_id=cid, timeframe="1m", limit=n),
        )
    with connection.cursor() as cur:
        sql = (
            "SELECT bucket_start, open, high, low, close, volume, volume_24h, closed, filled "
            "FROM marketdata_candle WHERE coin_id = %s AND timeframe = '1m' "
            "ORDER BY bucket_start DESC LIMIT 500"
        )
        measure(
            "raw SQL: 500 newest 1m candles of one coin",
            lambda cid: (cur.execute(sql, [cid]), cur.fetchall()),
        )
        cur.execute(
            "SELECT min(bucket_start), max(bucket_start) FROM marketdata_candle_1m WHERE coin_id = %s",
            [coin_ids[0]],
        )
        lo, hi = cur.fetchone()
    mid = lo + (hi - lo) / 2
    measure(
        "selector: 500 1m candles from the middle, oldest first",
        lambda cid: selectors.candles_range(
            coin_id=cid,
            timeframe="1m",
            start=mid,
            end=mid + timedelta(hours=12),
            limit=500,
            newest_first=False,
        ),
    )


if __name__ == "__main__":
    main()
