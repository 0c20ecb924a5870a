"""Fixtures for the CoinGecko client and simulator tests (no database needed)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from django.conf import settings

from ingestion.coingecko import CoinGeckoClient, RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "coingecko"
SIM_START = "2026-03-01T12:00:00Z"


def load_fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SIM_START)


@pytest.fixture
def sim(clock) -> Simulator:
    return Simulator(SimulatorConfig(coins=600, seed=7), clock=clock)


@pytest.fixture
def sim_http(sim) -> httpx.Client:
    """Raw HTTP access to the in-process simulator with a valid Pro key."""
    with httpx.Client(
        transport=httpx.WSGITransport(app=sim),
        base_url="http://sim/api/v3",
        headers={"x-cg-pro-api-key": "k1"},
    ) as client:
        yield client


@pytest.fixture
def redis_conn():
    conn = redis_lib.Redis.from_url(settings.REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def make_client(sim, clock, redis_conn):
    """Build clients against the in-process simulator; sleeps are recorded, not slept."""
    created: list[CoinGeckoClient] = []

    def factory(**overrides) -> CoinGeckoClient:
        sleeps = overrides.pop("sleeps", None)
        prefix = f"cgtest:{uuid.uuid4().hex[:8]}"
        kwargs = {
            "base_url": "http://sim/api/v3",
            "api_keys": ["k1"],
            "transport": httpx.WSGITransport(app=overrides.pop("app", sim)),
            "redis": redis_conn,
            "budget_key": f"{prefix}:budget",
            "rate_limit_per_min": 10_000,
            "clock": clock,
            "retry": RetryPolicy(
                max_attempts=5, base_delay=0.01, max_delay=0.05, max_total=20, retry_after_cap=5
            ),
        }
        if sleeps is not None:
            kwargs["sleep"] = sleeps.append
        kwargs.update(overrides)
        client = CoinGeckoClient(**kwargs)
        client.metrics.key = f"{prefix}:metrics"
        client.keys.redis_key = f"{prefix}:keys"
        created.append(client)
        return client

    yield factory
    for client in created:
        client.close()
