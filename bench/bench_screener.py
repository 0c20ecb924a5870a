"""Benchmark of the 1m screener refresh (marketdata.screener.latest_indicators_refresh) end to end,
with where the time goes: the DB reads, the computation, the upsert.

    .venv/bin/python bench/bench_screener.py [--coins 2000] [--minutes 1000] [--rounds 3]

Runs on the benchmark database (bench/benchdb.py, ``BENCH_DATABASE_URL``); fills it first through the
write path (``services.candles_upsert``) when it holds fewer than ``--coins`` coins with ``--minutes``
closed 1m candles each (a random walk per coin, a few coins priced ~1e-9). Then, per round, the next
minute's closed candle of every coin is written through the write path (as ingestion does; it also
logs the changes the screener consumes) and, on the same data:

- after: the incremental refresh (each coin's stored state moved by the candles after its anchor);
- before: the full recomputation (``full=True``: the last HISTORY candles of every coin read and run
  through TA-Lib — the refresh as it was before; it also builds fresh states, ~0.06 s at 2,000 coins).

Prints both with their parts, the ratio, and the largest difference between the values the two
store (relative to the coin's close for price-valued fields, absolute for RSI, relative otherwise).
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


def next_minute(ids: list[int], rng: np.random.Generator) -> datetime:
    """Write the next closed 1m candle of every bench coin (a step of its random walk)."""
    from django.db import connection

    from marketdata import services

    with connection.cursor() as cur:
        cur.execute("SELECT max(bucket_start) FROM marketdata_candle WHERE timeframe = '1m' AND closed")
        newest = cur.fetchone()[0]
        cur.execute(
            "SELECT coin_id, close FROM marketdata_candle WHERE timeframe = '1m' AND bucket_start = %s "
            "AND coin_id = ANY(%s)",
            [newest, ids],
        )
        last = dict(cur.fetchall())
    at = newest + timedelta(minutes=1)
    rows = []
    for cid in ids:
        close = last.get(cid, 1.0) * float(np.exp(rng.normal(0, 0.001)))
        high, low = close * (1 + rng.uniform(0, 0.001)), close * (1 - rng.uniform(0, 0.001))
        vol = float(rng.uniform(1e5, 1e9))
        rows.append(services.CandleRow(cid, "1m", at, close, high, low, close, None, vol, None, True))
    services.candles_upsert(rows=rows, source="bench", now=at + timedelta(minutes=1))
    return at + timedelta(minutes=1)


def stored() -> dict[int, tuple]:
    from marketdata import screener
    from marketdata.models import LatestIndicator

    fields = ("time", *screener.FIELDS)
    return {
        r[0]: r[1:] for r in LatestIndicator.objects.filter(timeframe="1m").values_list("coin_id", *fields)
    }


def largest_differences(a: dict[int, tuple], b: dict[int, tuple]) -> dict[str, float]:
    from marketdata import screener

    fields = ("time", *screener.FIELDS)
    price = {"close", "sma", "ema", "macd", "macd_signal", "macd_histogram", "atr"}
    price |= {"bb_upper", "bb_middle", "bb_lower"}
    out = dict.fromkeys(fields[1:], 0.0)
    assert a.keys() == b.keys(), "different coins"
    for coin, row in a.items():
        other = b[coin]
        assert row[0] == other[0], "different candle times"
        close = row[1]
        for name, x, y in zip(fields[1:], row[1:], other[1:], strict=True):
            if x is None or y is None:
                assert x is None and y is None, (coin, name, x, y)
                continue
            scale = abs(close) if name in price else 1.0 if name == "rsi" else max(abs(y), 1e-300)
            out[name] = max(out[name], abs(x - y) / scale)
    return out


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
    from marketdata.models import Coin

    call_command("migrate", verbosity=0)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"database: {BENCH_DB.rsplit('@', 1)[-1]}")
    now = fill(args.coins, args.minutes)
    ids = sorted(Coin.objects.filter(upstream_id__startswith="bench-").values_list("id", flat=True))[
        : args.coins
    ]
    Coin.objects.exclude(id__in=ids).update(active=False)  # only the bench coins (a smaller --coins run)
    Coin.objects.filter(id__in=ids).update(active=True)
    first = screener.latest_indicators_refresh(timeframe="1m", now=now, full=True)
    print(f"initial full refresh (builds every coin's state): {first.seconds:.3f} s")
    rng = np.random.default_rng(16)
    best = {"before": float("inf"), "after": float("inf")}

    def run(label: str, full: bool, at: datetime) -> dict[int, tuple]:
        result = screener.latest_indicators_refresh(timeframe="1m", now=at, full=full)
        parts = ", ".join(f"{k} {v:.3f} s" for k, v in result.parts.items())
        print(
            f"  {label:6} {'full' if full else 'incremental':11}: {result.coins} coins "
            f"({result.full} in full) from {result.rows_read:,} candles in {result.seconds:.3f} s "
            f"end to end ({parts})",
            flush=True,
        )
        best[label] = min(best[label], result.seconds)
        return stored()

    for r in range(args.rounds):
        now = next_minute(ids, rng)
        print(f"round {r + 1}: next minute written; load average {os.getloadavg()[0]:.2f}", flush=True)
        incremental = run("after", False, now)
        full_values = run("before", True, now)  # on the same data; it also leaves fresh states
        diffs = largest_differences(incremental, full_values)
        print(
            "  largest difference incremental vs full: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        )
    print(
        f"best end to end: before (full) {best['before']:.3f} s, after (incremental) {best['after']:.3f} s: "
        f"{best['before'] / best['after']:.1f}x faster (target <= 1.5 s)"
    )


if __name__ == "__main__":
    main()
