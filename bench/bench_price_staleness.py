"""Staleness of ``/v1/prices`` for the top coins: answer time minus the upstream ``last_updated`` of
the price served, on the simulator's clock.

The pipeline runs against the in-process simulator on a simulated timeline: the minute walk
(/coins/markets, every 60 s at :05) and the fast path (/simple/price for the top
``INGESTION_FAST_COINS``, every 20 s at :00/:20/:40), one job at a time (they share an advisory
lock). A job fetches when it starts and its rows are visible when it commits: start + its measured
wall time. After each commit the real API (``/v1/prices`` through the gateway, response cache on)
is asked for a sample of top coins; between two commits every answer is that one, so the staleness
of an answer at time ``a`` is ``a - last_updated``. Answers are sampled every 0.5 s of simulated time
over the whole run. "Top coins": the 25 largest (by our market cap) of the simulator's head (the real
top 100 of the 2023 sample), which the upstream refreshes every ``--head-tick`` seconds (CoinGecko
refreshes large caps continuously; its /simple/price cache is 20 s). Simulated tail coins that drifted
into our top 25 are refreshed upstream only every 20-60 s: their staleness is printed apart (it is
the upstream's own age, which no polling can remove).

Same-run baseline: the same timeline without the fast path (the minute walk only).

    .venv/bin/python bench/bench_price_staleness.py [--coins 1000] [--minutes 12] [--head-tick 1,3]
Environment: STALENESS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/candlestack_bench_staleness;
dropped and created afresh), REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DB = os.environ.get(
    "STALENESS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack_bench_staleness"
)
sys.path.insert(0, str(ROOT))
os.environ["DATABASE_URL"] = DB
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
UPSTREAM_CACHE_S = 20.0
SAMPLE_COINS = 25


def recreate_database() -> None:
    import psycopg

    name = DB.rsplit("/", 1)[1]
    admin = DB.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def run(*, coins: int, minutes: int, head_tick: tuple[float, float], fast: bool, key: str) -> np.ndarray:
    """One timeline; returns the staleness (s) of every sampled answer."""
    import httpx
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from ingestion import pipeline
    from ingestion.coingecko import CoinGeckoClient, RetryPolicy
    from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
    from marketdata import selectors

    with connection.cursor() as cur:  # a fresh store for each timeline
        cur.execute(
            "TRUNCATE marketdata_tick, marketdata_marketsnapshot, marketdata_candle, marketdata_coin CASCADE"
        )
    selectors.coin_memo_clear()
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes + 2)
    clock = ManualClock(start)
    sim = Simulator(SimulatorConfig(coins=coins, seed=5, head_tick_period=head_tick), clock=clock)
    client = CoinGeckoClient(
        base_url="http://sim/api/v3",
        api_keys=["bench"],
        transport=httpx.WSGITransport(app=sim),
        rate_limit_per_min=1_000_000,
        clock=clock,
        budget_key=f"bench:staleness:{time.time_ns()}",
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )
    api = Client(HTTP_X_API_KEY=key)
    jobs: list[tuple[float, str]] = []
    for m in range(minutes):
        jobs.append((m * 60 + 5.0, "walk"))
        if fast:
            jobs += [(m * 60 + s, "fast") for s in (0.0, 20.0, 40.0)]
    jobs.sort()
    free_at = 0.0
    commits: list[tuple[float, np.ndarray]] = []  # (commit time, last_updated epoch s of the sample)
    sample: list[str] = []
    others: list[str] = []
    walls = {"walk": [], "fast": []}
    for due, kind in jobs:
        begin = max(due, free_at)  # one write cycle at a time
        t = start + timedelta(seconds=begin)
        clock.set(t)
        wall0 = time.perf_counter()
        if kind == "walk":
            pipeline.refresh_markets(client, now=t)
        else:
            pipeline.refresh_prices_fast(client, now=t, coins=settings.INGESTION_FAST_COINS)
        wall = time.perf_counter() - wall0
        walls[kind].append(wall)
        free_at = begin + wall
        if not sample:  # the largest coins that the upstream refreshes continuously (the head)
            head = set(sim.universe.ids[:100])
            sample = [c for c in selectors.top_coins(limit=250) if c in head][:SAMPLE_COINS]
            others = [c for c in selectors.top_coins(limit=SAMPLE_COINS) if c not in head]
        if not sample:
            continue
        asked = sample + others
        body = api.get("/v1/prices", {"ids": ",".join(asked)}).json()["data"]
        updated = np.array(
            [
                datetime.fromisoformat(body[c]["last_updated"].replace("Z", "+00:00")).timestamp()
                for c in asked
            ]
        )
        commits.append((free_at, updated))
    client.close()
    # answers every 0.5 s from the first commit + 60 s (warm-up) to the end of the timeline
    times = np.array([c for c, _ in commits])
    grid = np.arange(times[0] + 60.0, minutes * 60.0, 0.5)
    out, out_others = [], []
    for a in grid:
        i = int(np.searchsorted(times, a, side="right")) - 1
        age = (start.timestamp() + a) - commits[i][1]
        out.append(age[: len(sample)])
        out_others.append(age[len(sample) :])
    for kind, w in walls.items():
        if w:
            print(f"    {kind}: {len(w)} runs, wall p50 {np.median(w):.2f}s max {max(w):.2f}s")
    if others:
        o = np.concatenate(out_others)
        print(
            f"    (also in our top {SAMPLE_COINS}, refreshed upstream only every 20-60 s: {len(others)} "
            f"coins, staleness p50 {np.percentile(o, 50):.1f}s p99 {np.percentile(o, 99):.1f}s: mostly "
            "the upstream's own age)"
        )
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coins", type=int, default=1000)
    ap.add_argument("--minutes", type=int, default=12)
    ap.add_argument(
        "--head-tick", default="1,3", help="LO,HI seconds between upstream refreshes of the top 100"
    )
    args = ap.parse_args()
    head_tick = tuple(float(v) for v in args.head_tick.split(","))
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing import services as billing
    from billing.models import Plan

    Plan.objects.update_or_create(
        name="bench",
        defaults={
            "display_name": "Bench", "rate_per_minute": 10_000_000, "burst": 1_000_000,
            "key_rate_per_minute": 10_000_000, "monthly_credits": 10**12, "endpoints": ["*"],
            "timeframes": ["*"],
        },
    )  # fmt: skip
    org = organization_create(name="staleness bench")
    _, key = api_key_create(organization=org, name="bench", audit=False)
    billing.organization_plan_set(organization=org, plan_name="bench")

    print(
        f"/v1/prices staleness of the top {SAMPLE_COINS} coins: {args.coins:,} coins, "
        f"{args.minutes} simulated minutes, upstream refreshes the top 100 every "
        f"{head_tick[0]:g}-{head_tick[1]:g} s; target p99 <= "
        f"{UPSTREAM_CACHE_S:g} s (upstream cache) + 5 s"
    )
    results = {}
    for name, fast in (("fast path (20 s) + minute walk", True), ("baseline: minute walk only", False)):
        print(f"  {name}")
        s = run(coins=args.coins, minutes=args.minutes, head_tick=head_tick, fast=fast, key=key)
        results[name] = s
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        print(
            f"    staleness over {len(s):,} answers: p50 {p50:5.1f}s  p90 {p90:5.1f}s  p99 {p99:5.1f}s  "
            f"max {s.max():5.1f}s"
        )
    fast_p99, base_p99 = (np.percentile(v, 99) for v in results.values())
    verdict = "OK" if fast_p99 <= UPSTREAM_CACHE_S + 5 else "OVER TARGET"
    print(
        f"  p99 {fast_p99:.1f}s vs target {UPSTREAM_CACHE_S + 5:g}s: {verdict}; baseline p99 {base_p99:.1f}s "
        f"(ratio fast/baseline {fast_p99 / base_p99:.2f})"
    )


if __name__ == "__main__":
    main()
