"""Benchmark of the indicator computation: the whole universe of one timeframe, recomputed.

    .venv/bin/python bench/bench_indicators.py [--coins 2000] [--candles 1000] [--rounds 3]

Pure computation (no database): for every coin, the seven house indicators of marketdata.indicators
with their default parameters (sma, ema, rsi, macd, bbands, atr, volatility) over the coin's whole
series in one ``indicators.compute_many`` call — what ``marketdata.screener.latest_indicators_refresh``
does per coin — beside the same work done by calling TA-Lib's functions directly ("TA-Lib alone"),
in the same run, rounds interleaved. Prints the timings (best of the rounds), the ratio (target
<= 1.5x) and the largest difference between the two.

``--db``: also run bench/bench_screener.py (the 1m screener refresh of all coins end to end, on the
benchmark database).
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


REQUESTS = [(name, indicators.defaults(name)) for name in indicators.HOUSE]


def ours(high, low, close) -> dict:
    outputs = indicators.compute_many(
        REQUESTS, timeframe="1h", series={"high": high, "low": low, "close": close}
    )
    return dict(zip(indicators.HOUSE, outputs, strict=True))


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coins", type=int, default=2000)
    parser.add_argument("--candles", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", action="store_true", help="also run bench/bench_screener.py")
    args = parser.parse_args()
    import talib

    high, low, close = universe(args.coins, args.candles)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}, "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"talib {talib.__version__}")  # fmt: skip
    print(
        f"universe: {args.coins} coins x {args.candles} candles, 7 indicators (defaults), "
        f"best of {args.rounds}"
    )

    def run_ours():
        for i in range(args.coins):
            ours(high[i], low[i], close[i])

    def run_talib():
        for i in range(args.coins):
            with_talib(talib, high[i], low[i], close[i])

    best = {"ours": float("inf"), "talib": float("inf")}
    cpu = {"ours": float("inf"), "talib": float("inf")}
    for _ in range(args.rounds):  # interleaved: both see the same machine load
        for key, fn in (("ours", run_ours), ("talib", run_talib)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
            cpu[key] = min(cpu[key], time.process_time() - c0)
    for key, label in (("ours", "marketdata.indicators"), ("talib", "TA-Lib alone         ")):
        print(
            f"{label}: {best[key]:7.3f} s wall, {cpu[key]:7.3f} s cpu "
            f"({best[key] / args.coins * 1e3:.3f} ms per coin)"
        )
    print(f"ratio marketdata.indicators / TA-Lib alone: {best['ours'] / best['talib']:.2f}x wall, "
          f"{cpu['ours'] / cpu['talib']:.2f}x cpu (target <= 1.5x)")  # fmt: skip
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
        import subprocess

        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_screener.py"))], check=True)


if __name__ == "__main__":
    main()
