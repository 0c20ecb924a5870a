"""Fixtures for the stream tests: real uvicorn processes serving ``apiplatform.asgi:application``
against the test database and Redis, coins with prices written through the real ingestion path
(the CoinGecko simulator), and API keys on plans with a chosen number of concurrent streams."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestion import pipeline
from ingestion.coingecko import RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from tests.conftest import served_process, simulator_client
from tests.gateway.conftest import make_plan, plans, tenant  # noqa: F401  (fixtures)

#: Short intervals so that the tests simulate minutes in seconds.
FAST = {
    "STREAM_HEARTBEAT_SECONDS": "1",
    "STREAM_KEY_CHECK_SECONDS": "0.5",
    "STREAM_SLOT_LEASE_SECONDS": "3",
    "STREAM_BUFFER_SECONDS": "600",
    "GATEWAY_REDIS_TIMEOUT": "5",
    "LOG_LEVEL": "WARNING",
}


@contextlib.contextmanager
def stream_server(
    log_dir: Path, *, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real uvicorn serving ``apiplatform.asgi:application`` on a free loopback port; yields its
    base URL and process once ``/healthz`` answers, stops it after."""
    with served_process(
        "uvicorn",
        ["uvicorn", "apiplatform.asgi:application", "--host", "127.0.0.1", "--port", "{port}",
         "--no-access-log", "--lifespan", "off"],
        log_dir,
        env={"DJANGO_SETTINGS_MODULE": "apiplatform.settings", "DB_POOL_MAX_SIZE": "4", **FAST,
             **(env or {})},
        startup_seconds=120,  # a loaded machine imports Django slowly
    ) as served:  # fmt: skip
        yield served


class Market:
    """The simulator and the real ingestion write cycle on a manual clock near the present."""

    def __init__(self, coins: int = 12) -> None:
        start = datetime.now(UTC).replace(second=5, microsecond=0) - timedelta(minutes=30)
        self.clock = ManualClock(start)
        self.sim = Simulator(SimulatorConfig(coins=coins, seed=18), clock=self.clock)
        self.client = simulator_client(
            self.sim,
            clock=self.clock,
            retry=RetryPolicy(
                max_attempts=2, base_delay=0.001, max_delay=0.002, max_total=5, retry_after_cap=0.001
            ),
        )
        self.now = start

    def ids(self) -> list[str]:
        return [r["id"] for r in self.sim.markets_at(self.now)]

    def refresh(self, minutes: float = 1.0):
        """Move the clock on and run one refresh cycle (it publishes its events after commit)."""
        self.now += timedelta(minutes=minutes)
        self.clock.set(self.now)
        return pipeline.refresh_markets(self.client, now=self.now)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def market(transactional_db) -> Iterator[Market]:
    m = Market()
    m.refresh()
    yield m
    m.close()


@pytest.fixture
def stream_key(tenant, make_plan):  # noqa: F811
    """A full API key of an organization on a plan allowing ``streams`` concurrent streams."""

    def make(streams: int = 5, **plan_fields) -> tuple[object, str]:
        plan_fields.setdefault("monthly_credits", 10**6)
        for limit, value in (("burst", 100), ("rate_per_minute", 6000), ("key_rate_per_minute", 6000)):
            plan_fields.setdefault(limit, value)  # a test opens streams in quick succession
        make_plan(f"streams{streams}", concurrent_streams=streams, **plan_fields)
        return tenant(f"streams{streams}")

    return make
