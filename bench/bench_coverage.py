"""Cost of a coverage read (``GET /v1/coins/{id}/coverage``: ``marketdata.selectors.coverage``) on
series as long as the default retention keeps them, against a same-run baseline.

Fills its own database (``BENCH_DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/candlestack_bench_coverage``) once with ``--coins`` coins, each
with full series at every timeframe (1m 30 days, 5m 365 days, 15m 730 days, 1h/4h/1d/1w 3 years:
~257,000 candles per coin) with random gaps, then measures per random coin:

- coverage (one query, bounded: index probes + at most 10,000 entries scanned per timeframe for gaps,
  plus an exact index-only count of the older part);
- the unbounded way (count(*) and lead() over every candle of every series), for comparison;
- baseline: the 500 newest 1m candles of one coin (``selectors.candles_range``, the hot candle read).

    .venv/bin/python bench/bench_coverage.py [--coins 8] [--reads 200]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta

import numpy as np

# its own database (not the shared candlestack_bench of the write-path benchmarks); benchdb reads
# the variable when imported
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack_bench_coverage")
from benchdb import use_bench_database

use_bench_database(create=True)
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
os.environ.setdefault("ALLOWED_HOSTS", "localhost")

SPANS = {
    "1m": timedelta(days=30),
    "5m": timedelta(days=365),
    "15m": timedelta(days=730),
    "1h": timedelta(days=3 * 365),
    "4h": timedelta(days=3 * 365),
    "1d": timedelta(days=3 * 365),
    "1w": timedelta(days=3 * 365),
}

UNBOUNDED_SQL = """
SELECT count(*), min(bucket_start), max(bucket_start),
       count(*) FILTER (WHERE nxt > bucket_start + %(iv)s)
FROM (SELECT bucket_start, lead(bucket_start) OVER (ORDER BY bucket_start) AS nxt
      FROM marketdata_candle WHERE coin_id = %(coin)s AND timeframe = %(tf)s) s
"""


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


def fill(coins: int) -> list[int]:
    from django.db import connection

    from marketdata import partitions, services
    from marketdata.models import TIMEFRAME_DELTA

    ids = services.coins_upsert(
        coins=[services.CoinIn(f"cov-{i}", f"c{i}", f"Cov {i}") for i in range(coins)]
    )
    coin_ids = sorted(ids.values())
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle")
        if cur.fetchone()[0] > 0:
            return coin_ids
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for tf, span in SPANS.items():
        step = TIMEFRAME_DELTA[tf]
        end = services.bucket_floor(tf, now)
        start = services.bucket_floor(tf, now - span)
        partitions.partitions_ensure(timeframe=tf, start=start, end=end, now=now)
        t = time.perf_counter()
        with connection.cursor() as cur:
            # ~0.1% of the buckets missing, in runs of 1-3 (random gaps), everything else present
            cur.execute(
                """
                INSERT INTO marketdata_candle (coin_id, timeframe, bucket_start, open, high, low, close,
                    closed, filled, samples, partial, source, revision, updated_at)
                SELECT c, %(tf)s, b, 1, 1, 1, 1, true, false, 3, false, 'bench', 0, now()
                FROM unnest(%(coins)s::bigint[]) AS c,
                     generate_series(%(start)s::timestamptz, %(end)s::timestamptz, %(iv)s::interval) AS b
                WHERE hashtext(c::text || b::text) %% 1000 <> 0
                """,
                {"tf": tf, "coins": coin_ids, "start": start, "end": end, "iv": step},
            )
            n = cur.rowcount
        print(f"filled {tf}: {n:,} candles in {time.perf_counter() - t:.1f} s")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE marketdata_candle")
    return coin_ids


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coins", type=int, default=8)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from marketdata import selectors
    from marketdata.models import TIMEFRAME_DELTA, TIMEFRAMES

    call_command("migrate", verbosity=0)
    coin_ids = fill(args.coins)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle")
        total = cur.fetchone()[0]
    print(f"candles stored: {total:,} ({total // len(coin_ids):,} per coin); reads per case: {args.reads}")
    rng = np.random.default_rng(1)
    picks = rng.choice(coin_ids, size=args.reads).tolist()

    def measure(label: str, fn) -> float:
        fn(picks[0])  # warm
        lat = []
        for cid in picks:
            t = time.perf_counter()
            fn(cid)
            lat.append((time.perf_counter() - t) * 1000)
        p50 = pct(lat, 50)
        print(f"{label:<62} p50 {p50:7.2f} ms  p99 {pct(lat, 99):7.2f} ms")
        return p50

    base = measure(
        "baseline: 500 newest 1m candles (candles_range)",
        lambda cid: selectors.candles_range(coin_id=cid, timeframe="1m", limit=500),
    )
    cov = measure(
        "coverage, 7 timeframes, bounded (selectors.coverage)", lambda cid: selectors.coverage(coin_id=cid)
    )
    gaps = {
        c.timeframe: (c.count, c.gaps_total, c.gaps_checked_from == c.first)
        for c in selectors.coverage(coin_id=picks[0])
    }
    print(f"  one coin: {gaps}  (count, gaps found, whole series searched)")

    def unbounded(cid: int) -> None:
        with connection.cursor() as cur:
            for tf in TIMEFRAMES:
                cur.execute(UNBOUNDED_SQL, {"coin": cid, "tf": tf, "iv": TIMEFRAME_DELTA[tf]})
                cur.fetchall()

    full = measure("unbounded: count + lead() over every candle, 7 queries", unbounded)
    print(f"coverage / baseline p50: {cov / base:.1f}x;  unbounded / coverage p50: {full / cov:.1f}x")


if __name__ == "__main__":
    main()
