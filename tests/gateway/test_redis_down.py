"""Redis unreachable: fail open with a per-process limiter; metering goes straight to PostgreSQL."""

from __future__ import annotations

import time

import pytest

from billing import gate
from billing.models import UsageRecord
from tests.gateway.conftest import key_client

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


def test_redis_down_fails_open_with_local_limits_and_durable_metering(
    tenant, make_plan, settings, closed_port
):
    plan = make_plan("local", rate_per_minute=6, burst=3, key_rate_per_minute=6)
    org, key = tenant("local")
    settings.GATEWAY_REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    gate.reset()
    client = key_client(key)
    started = time.monotonic()
    assert client.get("/v1/limits").json()["degraded"] is True  # 1 of the burst
    responses = [client.get("/v1/test/echo") for _ in range(plan.burst + 1)]
    elapsed = time.monotonic() - started
    codes = [r.status_code for r in responses]
    # the plan's burst still holds in this process; the rest is refused locally
    assert codes == [200] * (plan.burst - 1) + [429, 429]
    assert "RateLimit" in responses[0] and "Retry-After" in responses[-1]
    # every answer was written to PostgreSQL at once (no flush needed, nothing lost)
    rows = UsageRecord.objects.filter(organization=org)
    assert sum(r.requests for r in rows) == len(codes) + 1
    assert sum(r.credits for r in rows) == (plan.burst - 1) * 2
    # one failed connection attempt, then the back-off skips Redis: no per-request timeout
    assert elapsed < 5 * settings.GATEWAY_REDIS_TIMEOUT + 2


def test_gateway_recovers_when_redis_is_back(tenant, settings, closed_port):
    _org, key = tenant()
    good_url = settings.GATEWAY_REDIS_URL
    settings.GATEWAY_REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    gate.reset()
    client = key_client(key)
    assert client.get("/v1/limits").json()["degraded"] is True
    settings.GATEWAY_REDIS_URL = good_url  # the client reconnects on URL change; in production after
    gate.reset()  # GATEWAY_REDIS_RETRY_SECONDS
    assert client.get("/v1/limits").json()["degraded"] is False
