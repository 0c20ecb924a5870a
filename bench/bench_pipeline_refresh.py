"""Wall time of one full refresh cycle (ingestion.pipeline.refresh_markets) for N coins.

Upstream is the in-process simulator (httpx.WSGITransport), the store is the benchmark database
(the same one bench_write_path.py fills, so the candle table is big). Runs consecutive simulated
minutes and prints, per cycle, the time to fetch every page and the time to write snapshots, ticks,
1m candles, closes and roll-ups.

    .venv/bin/python bench/bench_pipeline_refresh.py [--coins 10000] [--cycles 5]
Environment: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/candlestack_bench).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from benchdb import BENCH_DB, create_database, use_bench_database

use_bench_database()


class TimedClient:
    """Wraps the client to time the upstream part of a cycle."""

    def __init__(self, client):
        self.client = client
        self.seconds = 0.0

    def coins_markets_page(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return self.client.coins_markets_page(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coins", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=5)
    args = ap.parse_args()
    create_database()
    import django

    django.setup()
    import httpx
    from django.core.management import call_command

    from ingestion import pipeline
    from ingestion.coingecko import CoinGeckoClient, RetryPolicy
    from ingestion.simulator import ManualClock, Simulator, SimulatorConfig

    call_command("migrate", verbosity=0)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=args.cycles + 1)
    clock = ManualClock(start)
    sim = Simulator(SimulatorConfig(coins=args.coins, seed=77), clock=clock)
    client = CoinGeckoClient(
        base_url="http://sim/api/v3",
        api_keys=["bench"],
        transport=httpx.WSGITransport(app=sim),
        rate_limit_per_min=1_000_000,
        clock=clock,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )
    print(f"refresh of {args.coins:,} coins, {args.cycles} cycles (simulated minutes), store: {BENCH_DB}")
    walls = []
    for cycle in range(args.cycles):
        t_poll = start + timedelta(minutes=cycle, seconds=5)
        clock.set(t_poll)
        timed = TimedClient(client)
        t = time.perf_counter()
        summary = pipeline.refresh_markets(timed, now=t_poll)
        wall = time.perf_counter() - t
        walls.append(wall)
        d = summary.details
        print(
            f"cycle {cycle}: wall {wall:6.2f}s = upstream {timed.seconds:5.2f}s ({summary.calls} calls) + "
            f"store {wall - timed.seconds:5.2f}s; {d['coins_polled']:,} coins, {d['ticks_new']:,} new ticks, "
            f"1m {d['candles_1m']['inserted']:,} ins / {d['candles_1m']['updated']:,} upd, "
            f"roll-ups {sum(d['rollups'].values()):,} rows, {summary.rows_written:,} rows written"
        )
    client.close()
    steady = walls[1:] or walls
    print(f"steady-state cycle wall time: median {statistics.median(steady):.2f}s, max {max(steady):.2f}s")


if __name__ == "__main__":
    main()
