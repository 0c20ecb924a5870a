"""Benchmark of the indicator computation: the whole universe of one timeframe, recomputed.

    .venv/bin/python bench/bench_indicators.py [--coins 2000] [--candles 1000] [--rounds 3]

Pure computation (no database): for every coin, every indicator of marketdata.indicators with its
default parameters (sma, ema, rsi, macd, bbands, atr, volatility) over the coin's whole series —
what ``marketdata.screener.latest_indicators_refresh`` and the indicator endpoint do per series —
beside the same work done by the TA-Lib C library (``talib``, dev extra) for scale. Also checks that
both agree. Prints the machine and the timings (best of the rounds).

``--db``: also time ``marketdata.screener.latest_indicators_refresh(timeframe="1m")`` end to end
(read the last 600 closed candles of every coin, compute, upsert the screener table) on the benchmark
database of bench/bench_write_path.py (``BENCH_DATABASE_URL``, default
postgres://postgres@127.0.0.1:5432/candlestack_bench; migrated first).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from marketdata import indicators


def universe(coins: int, candles: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (coins, candles)), axis=1))
    high = close * (1 + rng.uniform(0, 0.01, close.shape))
    low = close * (1 - rng.uniform(0, 0.01, close.shape))
    return high, low, close


def ours(high, low, close) -> dict:
    out = {}
    for name, spec in indicators.INDICATORS.items():
        params = {p.name: p.default for p in spec.params}
        out[name] = indicators.compute(
            name, params=params, timeframe="1h", series={"high": high, "low": low, "close": close}
        )
    return out


def with_talib(talib, high, low, close) -> dict:
    return {
        "sma": talib.SMA(close, 20),
        "ema": talib.EMA(close, 20),
        "rsi": talib.RSI(close, 14),
        "macd": talib.MACD(close, 12, 26, 9),
        "bbands": talib.BBANDS(close, 20, 2.0, 2.0, 0),
        "atr": talib.ATR(high, low, close, 14),
        "volatility": talib.STDDEV(np.diff(np.log(close)), 30),  # population; same amount of work
    }


def timed(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coins", type=int, default=2000)
    parser.add_argument("--candles", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", action="store_true", help="also time the screener refresh on the bench DB")
    args = parser.parse_args()
    high, low, close = universe(args.coins, args.candles)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}, "
          f"python {platform.python_version()}, numpy {np.__version__}")  # fmt: skip
    print(
        f"universe: {args.coins} coins x {args.candles} candles, 7 indicators (defaults), "
        f"best of {args.rounds}"
    )

    def run_ours():
        for i in range(args.coins):
            ours(high[i], low[i], close[i])

    t = timed(run_ours, args.rounds)
    print(f"marketdata.indicators: {t:7.3f} s  ({t / args.coins * 1e3:.3f} ms per coin)")
    try:
        import talib
    except ImportError:
        print("talib not installed (dev extra): no reference timing")
        return

    def run_talib():
        for i in range(args.coins):
            with_talib(talib, high[i], low[i], close[i])

    t_ref = timed(run_talib, args.rounds)
    print(f"TA-Lib (C) reference:  {t_ref:7.3f} s  ({t_ref / args.coins * 1e3:.3f} ms per coin)")
    worst = 0.0
    for i in range(0, args.coins, max(1, args.coins // 50)):
        a, b = ours(high[i], low[i], close[i]), with_talib(talib, high[i], low[i], close[i])
        pairs = [(a["sma"]["value"], b["sma"]), (a["ema"]["value"], b["ema"]), (a["rsi"]["value"], b["rsi"]),
                 (a["atr"]["value"], b["atr"]), (a["macd"]["macd"], b["macd"][0]),
                 (a["bbands"]["upper"], b["bbands"][0])]  # fmt: skip
        for x, y in pairs:
            m = ~np.isnan(y)
            worst = max(worst, float(np.max(np.abs(x[m] - y[m]) / np.maximum(np.abs(y[m]), 1.0))))
    print(f"max relative difference vs TA-Lib on sampled coins: {worst:.2e}")
    if args.db:
        refresh_on_db(args.rounds)


def refresh_on_db(rounds: int) -> None:
    from benchdb import use_bench_database

    use_bench_database()
    import django

    django.setup()
    from django.core.management import call_command

    from marketdata import screener

    call_command("migrate", verbosity=0)
    for _ in range(rounds):
        result = screener.latest_indicators_refresh(timeframe="1m")
        print(f"screener refresh 1m (DB read + compute + upsert): {result.coins} coins from "
              f"{result.rows_read:,} candles in {result.seconds:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
