"""Upstream calls and wall time to refresh the market data of N coins against the CoinGecko simulator.

    .venv/bin/python bench/bench_upstream_refresh.py [--coins 10000] [--rounds 3] [--error-rate 0]

The floor for 10,000 coins is 40 calls (/coins/markets, 250 per page) + 1 empty page that ends the
walk. Measured in-process (httpx.WSGITransport: simulator + client CPU only) and over real loopback
HTTP (threaded WSGI server in this process), plus the /simple/price alternative for comparison.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from ingestion.coingecko import CoinGeckoClient, RetryPolicy
from ingestion.simulator import SimClock, Simulator, SimulatorConfig, SimulatorServer


def make_client(**kwargs) -> CoinGeckoClient:
    return CoinGeckoClient(
        api_keys=["bench"],
        rate_limit_per_min=1_000_000,
        retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.1),
        **kwargs,
    )


def refresh(client: CoinGeckoClient) -> tuple[int, int, int, float]:
    before = client.metrics.snapshot()["calls"]
    t0 = time.perf_counter()
    result = client.coins_markets_all(per_page=250)
    wall = time.perf_counter() - t0
    calls = client.metrics.snapshot()["calls"] - before
    return calls, len(result.records), len(result.rejects), wall


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--coins", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="simulator fault: share of 429/5xx answers"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    sim = Simulator(SimulatorConfig(coins=args.coins, seed=42), clock=SimClock(start="2026-06-01T00:00:00Z"))
    sim.set_faults(seed=1, error_rate=args.error_rate)
    sim.market_state()  # warm the hourly high/low cache once, as a long-running simulator would have
    print(f"simulator: {args.coins} coins built and warmed in {time.perf_counter() - t0:.2f}s")
    floor = math.ceil(args.coins / 250)
    print(f"floor: {floor} calls at 250 per page (+1 empty page that ends the walk)")

    in_process = make_client(base_url="http://sim/api/v3", transport=httpx.WSGITransport(app=sim))
    walls = []
    for r in range(args.rounds):
        cpu0 = time.process_time()
        calls, ok, rejected, wall = refresh(in_process)
        cpu = time.process_time() - cpu0
        walls.append(wall)
        print(
            f"in-process  round {r + 1}: {calls} calls, {ok} coins ({rejected} rejected), "
            f"wall {wall:.3f}s, cpu {cpu:.3f}s (simulator + client)"
        )
    sim_ms = [e["ms"] for e in list(sim.request_log)[-(floor + 1) :]]
    print(f"simulator time per /coins/markets page: median {statistics.median(sim_ms):.1f} ms")

    with SimulatorServer(sim) as server:
        over_http = make_client(base_url=server.url)
        for r in range(args.rounds):
            calls, ok, rejected, wall = refresh(over_http)
            print(f"loopback HTTP round {r + 1}: {calls} calls, {ok} coins, wall {wall:.3f}s")
        ids = sim.coin_ids
        before = over_http.metrics.snapshot()["calls"]
        t1 = time.perf_counter()
        prices = over_http.simple_price(ids)
        wall = time.perf_counter() - t1
        calls = over_http.metrics.snapshot()["calls"] - before
        print(
            f"/simple/price alternative: {calls} calls (URLs <= {over_http.max_url_length} chars), "
            f"{len(prices.records)} coins, wall {wall:.3f}s"
        )
        over_http.close()
    in_process.close()
    print(f"retries (with --error-rate): {in_process.metrics.snapshot()['retries']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
