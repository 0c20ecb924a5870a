"""Benchmark of the candle write path (marketdata.services.candles_upsert) and the hot read.

Fills a dedicated database with >= 10 million 1m candles through the write path, then measures on
that table:
  - write path: new rows, an identical replay (no-op), changed rows (candles/s);
  - Django ORM bulk_create (plain insert) and bulk_create(update_conflicts=True) on the same table;
  - latency p50/p99 of "500 newest 1m candles of one coin" (selectors.candles_range).

Usage (takes a few minutes; the database is reused if it already holds the rows):
    .venv/bin/python bench/bench_write_path.py [--coins 2000] [--minutes 5000] [--batch 100000]
Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/candlestack_bench).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from benchdb import BENCH_DB, create_database, use_bench_database

use_bench_database()


def _rows(coin_ids: np.ndarray, start: datetime, minutes: int, seed: int, bump: float = 0.0):
    """Candle tuples for every coin x minute (coin-major), deterministic per seed."""
    from marketdata.services import CandleRow

    rng = np.random.default_rng(seed)
    n = len(coin_ids) * minutes
    close = 100.0 * np.exp(rng.normal(0, 0.001, n)) + bump
    opn = close * np.exp(rng.normal(0, 0.0005, n))
    high = np.maximum(opn, close) * 1.001
    low = np.minimum(opn, close) * 0.999
    vol24 = rng.uniform(1e5, 1e9, n)
    times = [start + timedelta(minutes=m) for m in range(minutes)]
    cids = np.repeat(coin_ids, minutes).tolist()
    o, h, lo, c, v = opn.tolist(), high.tolist(), low.tolist(), close.tolist(), vol24.tolist()
    return [
        CandleRow(cids[i], "1m", times[i % minutes], o[i], h[i], lo[i], c[i], None, v[i], None, True, False)
        for i in range(n)
    ]


def report(label: str, n: int, dt: float) -> None:
    print(f"{label:<44} {n:>9,} rows {dt:6.2f}s {n / dt:>10,.0f} rows/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coins", type=int, default=2000)
    ap.add_argument("--minutes", type=int, default=5000, help="minutes of 1m history per coin to store")
    ap.add_argument("--batch", type=int, default=100_000, help="rows per write-path call")
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()

    create_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from marketdata import partitions, selectors, services
    from marketdata.models import Candle

    call_command("migrate", verbosity=0)
    coin_map = services.coins_upsert(
        coins=[services.CoinIn(f"bench-{i}", f"b{i}", f"Bench {i}") for i in range(args.coins)]
    )
    coin_ids = np.array(sorted(coin_map.values()), dtype=np.int64)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=args.minutes + 200)
    target = args.coins * args.minutes

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle_1m")
        stored = cur.fetchone()[0]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}"
    )
    print(f"database: {BENCH_DB.rsplit('@', 1)[-1]}; stored 1m candles before: {stored:,}")

    # 1. fill (insert-heavy upsert), coin chunks so that each call carries --batch rows
    if stored < target:
        per_call = max(1, args.batch // args.minutes)
        t_write = 0.0
        written = 0
        t_all = time.perf_counter()
        for i in range(0, args.coins, per_call):
            chunk = coin_ids[i : i + per_call]
            rows = _rows(chunk, start, args.minutes, seed=i)
            t = time.perf_counter()
            r = services.candles_upsert(rows=rows, source="bench", now=now)
            t_write += time.perf_counter() - t
            written += r.inserted
            if (i // per_call) % 20 == 0:
                print(
                    f"  fill: {written:,}/{target:,} rows, write path {written / t_write:,.0f} rows/s",
                    flush=True,
                )
        print(
            f"fill: {written:,} rows inserted; write path {written / t_write:,.0f} rows/s "
            f"(wall incl. row generation {time.perf_counter() - t_all:.0f}s)"
        )
        with connection.cursor() as cur:
            cur.execute("VACUUM ANALYZE marketdata_candle_1m")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_candle")
        print(f"stored candles now: {cur.fetchone()[0]:,}")

    # 2. write path on the full table: new minutes, replay, changed values
    sel = coin_ids
    n_min = max(1, args.batch // len(sel))  # minutes per measured batch (all coins x n_min = --batch rows)
    new_start = start + timedelta(minutes=args.minutes)
    with connection.cursor() as cur:  # make reruns comparable: remove rows of earlier runs' new minutes
        cur.execute(
            "DELETE FROM marketdata_candle WHERE timeframe = '1m' AND bucket_start >= %s", [new_start]
        )
    partitions.partitions_ensure(timeframe="1m", start=new_start, end=now + timedelta(days=1))

    def timed(label: str, rows, expect: str) -> float:
        t = time.perf_counter()
        r = services.candles_upsert(rows=rows, source="bench", now=now)
        dt = time.perf_counter() - t
        print(
            f"write path, {label:<34} {len(rows):>9,} rows {dt:6.2f}s {len(rows) / dt:>10,.0f} rows/s  "
            f"(ins {r.inserted:,} upd {r.updated:,} same {r.unchanged:,}) [{expect}]"
        )
        return len(rows) / dt

    new_rows = _rows(sel, new_start, n_min, seed=999)
    timed("new rows (insert)", new_rows, "all inserted")
    timed("identical replay (no-op)", new_rows, "all unchanged")
    timed("changed values (update)", _rows(sel, new_start, n_min, seed=999, bump=1.0), "all updated")
    dup = new_rows[: len(new_rows) // 2] * 2
    timed("batch with every key twice", dup, "deduplicated")

    # 3. ORM bulk_create on the same table (next 10 minutes, new rows)
    orm_start = new_start + timedelta(minutes=n_min)
    orm_rows = _rows(sel, orm_start, n_min, seed=1234)
    written_at = datetime.now(UTC)
    objs = [Candle(**r._asdict(), source="bench", updated_at=written_at) for r in orm_rows]
    t = time.perf_counter()
    Candle.objects.bulk_create(objs, batch_size=2000)
    dt = time.perf_counter() - t
    report("ORM bulk_create (plain insert)", len(objs), dt)
    objs = [
        Candle(**r._asdict(), source="bench", updated_at=written_at)
        for r in _rows(sel, orm_start, n_min, seed=77)
    ]
    t = time.perf_counter()
    Candle.objects.bulk_create(
        objs,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["coin", "timeframe", "bucket_start"],
        update_fields=["open", "high", "low", "close", "volume", "volume_24h", "updated_at"],
    )
    dt = time.perf_counter() - t
    report("ORM bulk_create(update_conflicts) (update)", len(objs), dt)

    # 4. the hot read: 500 newest candles of one coin at one timeframe
    rng = np.random.default_rng(5)
    lat = []
    for cid in rng.choice(coin_ids, size=args.reads).tolist():
        t = time.perf_counter()
        rows = selectors.candles_range(coin_id=cid, timeframe="1m", limit=500)
        lat.append((time.perf_counter() - t) * 1000)
        assert len(rows) == 500
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1]
    print(
        f"read 500 newest 1m candles of one coin ({args.reads} random coins): "
        f"p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms"
    )
    with connection.cursor() as cur:
        cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT * FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = '1m' ORDER BY bucket_start DESC LIMIT 500",
            [int(coin_ids[0])],
        )
        print("plan:\n  " + "\n  ".join(r[0] for r in cur.fetchall()))


if __name__ == "__main__":
    main()
