"""The shared upstream budget holds across OS processes (real Redis, short windows)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

from django.conf import settings

from ingestion.coingecko import RateBudget
from ingestion.simulator import Simulator, SimulatorConfig, SimulatorServer

from ..conftest import REPO_ROOT

WORKER = textwrap.dedent(
    """
    import json, sys, redis
    from ingestion.coingecko import RateBudget
    url, key = sys.argv[1], sys.argv[2]
    limit, window, n = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    budget = RateBudget(redis.Redis.from_url(url), limit=limit, window=window, key=key, max_wait=30)
    print(json.dumps([budget.acquire() for _ in range(n)]))
    """
)

CLIENT_WORKER = textwrap.dedent(
    """
    import json, sys, redis
    from ingestion.coingecko import CoinGeckoClient, RetryPolicy
    url, key, base, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = CoinGeckoClient(base_url=base, api_keys=["k"], redis=redis.Redis.from_url(url), budget_key=key,
                             rate_limit_per_min=8, rate_window=1.5, retry=RetryPolicy(max_attempts=1))
    client.metrics.key = key + ":metrics"
    for _ in range(n):
        client.ping()
    print(json.dumps(client.metrics.snapshot()))
    """
)


def spawn(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_budget_waits_instead_of_refusing(redis_conn):
    budget = RateBudget(redis_conn, limit=3, window=0.3, key=f"cgtest:{uuid.uuid4().hex}")
    grants = [budget.acquire() for _ in range(5)]
    assert grants[3] - grants[0] >= 300 and grants[4] - grants[1] >= 300
    assert budget.waited_seconds > 0


def test_pause_holds_every_caller(redis_conn):
    key = f"cgtest:{uuid.uuid4().hex}"
    first = RateBudget(redis_conn, limit=100, window=1, key=key)
    second = RateBudget(redis_conn, limit=100, window=1, key=key)
    first.pause(0.3)
    wait, _ = second.try_acquire()
    assert 0 < wait <= 0.3


def test_two_processes_never_exceed_the_shared_budget():
    key = f"cgtest:{uuid.uuid4().hex}"
    limit, window_ms = 6, 400
    procs = [spawn(WORKER, settings.REDIS_URL, key, limit, window_ms / 1000, 15) for _ in range(2)]
    grants: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        grants += json.loads(out)
    grants.sort()
    assert len(grants) == 30
    # sliding window: any `limit + 1` consecutive grants span at least one full window
    assert all(grants[i + limit] - grants[i] >= window_ms for i in range(len(grants) - limit))


def test_two_client_processes_share_one_budget_so_the_upstream_never_answers_429():
    key = f"cgtest:{uuid.uuid4().hex}"
    sim = Simulator(SimulatorConfig(coins=20, rate_limit_per_min=8, rate_limit_window=1.0))
    with SimulatorServer(sim) as server:
        # 2 x 8 calls: without a shared budget both processes would burst 16 calls into one window
        procs = [spawn(CLIENT_WORKER, settings.REDIS_URL, key, server.url, 8) for _ in range(2)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()[-2000:]
            results.append(json.loads(out))
    assert sum(r["calls"] for r in results) == 16
    assert sim.stats.get("rate_limited", 0) == 0 and sim.stats.get("status_429", 0) == 0
    assert sum(r["rate_limited"] for r in results) == 0
