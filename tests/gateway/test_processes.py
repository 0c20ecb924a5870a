"""Real processes: two gunicorn workers serving, several client processes firing, a flush SIGKILLed.

These tests commit their data (transactional) so the web processes see it."""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from billing import metering
from billing.models import UsageRecord
from tests.conftest import run_python, test_database_url, web_process
from tests.gateway.conftest import parse_ratelimit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web(tmp_path: Path):
    """gunicorn with 2 sync workers on loopback against the test database; yields its base URL."""
    env = {
        # a loaded CI machine must not trip the Redis-down fallback (which is per process)
        "GATEWAY_REDIS_TIMEOUT": "5",
        "LOG_LEVEL": "WARNING",
    }
    with web_process(tmp_path, settings_module="tests.gateway.settings_e2e", workers=2, env=env) as (base, _):
        yield base


def _fire(args):
    url, key, n = args
    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            r = client.get(url, headers={"X-API-Key": key})
            out.append((r.status_code, r.headers.get("RateLimit", "")))
    return out


def test_concurrent_client_processes_never_get_more_than_the_burst(web, tenant, make_plan):
    # one request per minute sustained: within the few seconds of the test exactly `burst` pass
    plan = make_plan("burst", rate_per_minute=1, burst=15, key_rate_per_minute=1, monthly_credits=10**6)
    _org, key = tenant("burst")
    processes, per_process = 4, 12
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes) as pool:
        results = [
            x
            for chunk in pool.map(_fire, [(f"{web}/v1/test/echo", key, per_process)] * processes)
            for x in chunk
        ]
    admitted = [rl for status, rl in results if status == 200]
    assert len(admitted) == plan.burst
    assert sum(1 for status, _ in results if status == 429) == processes * per_process - plan.burst
    # every admitted request saw a different "remaining": the countdown is exact across processes
    remaining = sorted(parse_ratelimit(rl)["minute"]["r"] for rl in admitted)
    assert remaining == list(range(plan.burst))


def test_mixed_traffic_over_two_workers_is_metered_exactly_even_with_a_killed_flush(web, tenant, make_plan):
    make_plan("roomy", rate_per_minute=60_000, burst=1000, key_rate_per_minute=60_000, monthly_credits=10**6)
    make_plan("cramped", rate_per_minute=1, burst=3, key_rate_per_minute=1, monthly_credits=10**6)
    org, key = tenant("roomy")
    org2, key2 = tenant("cramped")
    plan_of_calls = (
        [(key, "/v1/test/echo", 200)] * 40
        + [(key, "/v1/test/echo?limit=2500", 200)] * 10
        + [(key, "/v1/test/echo?status=404", 404)] * 15
        + [(key, "/v1/test/echo?status=400", 400)] * 5
        + [(key, "/v1/limits", 200)] * 10
        + [(key2, "/v1/test/echo", None)] * 12  # 3 admitted, 9 refused (429)
        + [("cs_live_bogus", "/v1/test/echo", 401)] * 6
    )

    def call(item):
        k, path, _ = item
        return httpx.get(f"{web}{path}", headers={"X-API-Key": k}, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, plan_of_calls))
    for (_k, path, expected), got in zip(plan_of_calls, codes, strict=True):
        if expected is not None:
            assert got == expected, path
    org2_codes = [c for (k, _p, _e), c in zip(plan_of_calls, codes, strict=True) if k == key2]
    assert sorted(org2_codes) == [200] * 3 + [429] * 9

    # a flush is SIGKILLed inside its PostgreSQL transaction, then a second one runs
    killed = run_python(
        "import django, os, signal; django.setup()\n"
        "from billing import metering\n"
        "def die(name):\n"
        "    if name == 'before_commit': os.kill(os.getpid(), signal.SIGKILL)\n"
        "metering._checkpoint = die\n"
        "metering.usage_flush()\n",
        {"DJANGO_SETTINGS_MODULE": "tests.gateway.settings_e2e", "DATABASE_URL": test_database_url()},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not UsageRecord.objects.exists()
    metering.usage_flush()

    def usage(o):
        rows = UsageRecord.objects.filter(organization=o)
        return sum(r.requests for r in rows), sum(r.credits for r in rows)

    n_org = sum(1 for k, _p, _e in plan_of_calls if k == key)
    credits_org = 40 * 2 + 10 * 3  # echo costs 2; 2500 rows cost ceil(2500/1000) = 3; failures are free
    assert usage(org) == (n_org, credits_org)
    assert usage(org2) == (12, 3 * 2)
    anonymous = UsageRecord.objects.filter(organization__isnull=True)
    assert sum(r.requests for r in anonymous) == 6
    assert sum(r.requests for r in UsageRecord.objects.all()) == len(plan_of_calls)
    assert metering.usage_flush().applied == 0  # nothing left, nothing re-applied
