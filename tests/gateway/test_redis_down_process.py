"""Redis stopped while a real web process serves: the public API keeps answering (key lookups from
PostgreSQL, the per-process fallback limiter, metering into PostgreSQL), and the log carries one
warning per Redis connection per outage (apiplatform/redis_access.py's back-off), never a traceback
per request — however many back-off periods the outage spans."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from billing.models import UsageRecord
from tests.conftest import web_process

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 40
PAUSE = 0.05  # 40 x 50 ms: the outage spans about ten back-off periods of 0.2 s


def test_web_process_answers_and_warns_once_per_connection_with_redis_down(
    tmp_path: Path, tenant, make_plan, closed_port
):
    # a plan whose limits the requests stay within: the fallback limiter enforces them per process
    make_plan("roomy", rate_per_minute=6000, burst=100, key_rate_per_minute=6000, monthly_credits=10**6)
    _org, key = tenant("roomy")
    dead = f"redis://127.0.0.1:{closed_port}/0"
    env = {
        "REDIS_URL": dead,
        "GATEWAY_REDIS_URL": dead,
        "REDIS_BACKOFF_SECONDS": "0.2",
        "GATEWAY_REDIS_RETRY_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
    }
    statuses = []
    with (
        web_process(tmp_path, settings_module="tests.gateway.settings_e2e", env=env) as (base, _proc),
        httpx.Client(timeout=10) as client,
    ):
        for _ in range(REQUESTS):
            response = client.get(f"{base}/v1/ping", headers={"X-API-Key": key})
            statuses.append(response.status_code)
            time.sleep(PAUSE)
    log = "\n".join(p.read_text() for p in tmp_path.glob("gunicorn-*.log"))

    assert statuses == [200] * REQUESTS, log
    assert "Traceback" not in log
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    # one line per named connection that the requests touched (the key cache's and the gateway's),
    # each from the back-off policy, each once
    names = [re.search(r"unavailable \((\w+)\)", line) for line in warnings]
    assert all(m is not None for m in names), warnings
    connections = [m.group(1) for m in names if m]
    assert sorted(connections) == sorted(set(connections)), warnings
    assert set(connections) <= {"default", "gateway", "cache"}, warnings
    assert "gateway" in connections and "default" in connections, warnings
    # and nothing was lost: every answered request was metered (into PostgreSQL, Redis being down)
    assert sum(UsageRecord.objects.values_list("requests", flat=True)) == REQUESTS
