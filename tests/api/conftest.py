"""Fixtures for the public market data API tests: real API keys, data written by the store's write path."""

from __future__ import annotations

import importlib
import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from rest_framework.test import APIClient

from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import services as billing_services
from marketdata import services

_seq = itertools.count(1)
SEED = importlib.import_module("billing.migrations.0002_seed_plans")


@pytest.fixture
def api_key(db):
    """A real key (accounts services) of an organization on the Enterprise plan (high limits)."""
    from django.apps import apps

    SEED.seed(apps, None)
    org = organization_create(name=f"API Org {next(_seq)}")
    _row, full_key = api_key_create(organization=org, name="k", audit=False)
    billing_services.organization_plan_set(organization=org, plan_name="enterprise")
    return full_key


@pytest.fixture
def client(api_key) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return c


def random_walk(seed: int, n: int, start: float = 100.0):
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    opens = np.concatenate(([start], close[:-1]))
    high = np.maximum(opens, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(opens, close) * (1 - rng.uniform(0, 0.005, n))
    return opens, high, low, close


@pytest.fixture
def hour0() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def market(db, django_capture_on_commit_callbacks, hour0):
    """Three coins; bitcoin has 300 1h candles (299 closed + the open current hour), ethereum 40,
    dogecoin none; snapshots for bitcoin and ethereum. Written through marketdata.services."""
    with django_capture_on_commit_callbacks(execute=True):
        return write_market(hour0)


def write_market(hour0: datetime) -> dict[str, int]:
    """The coins, candles and snapshots of :func:`market` (also the contract tests' data)."""
    ids = services.coins_upsert(
        coins=[
            services.CoinIn("bitcoin", "btc", "Bitcoin"),
            services.CoinIn("ethereum", "eth", "Ethereum"),
            services.CoinIn("dogecoin", "doge", "Dogecoin"),
        ]
    )
    write_hourly(ids["bitcoin"], 300, hour0, seed=1, start=60000.0)
    write_hourly(ids["ethereum"], 40, hour0, seed=2, start=3000.0)
    now = datetime.now(UTC)
    services.snapshots_upsert(
        rows=[
            services.SnapshotIn(ids["bitcoin"], 60000.0, 1.2e12, 1, 3e10, 61000.0, 59000.0, 1.5, now, now),
            services.SnapshotIn(ids["ethereum"], 3000.0, 3.6e11, 2, 1e10, 3100.0, 2900.0, -0.5, now, now),
        ]
    )
    # what the scheduled reference refreshes store: every fiat rate of vs=, two global snapshots
    fiat = {"usd": 1.0, "eur": 0.92, "gbp": 0.79, "jpy": 150.0, "chf": 0.88, "cad": 1.37, "aud": 1.52}
    fiat |= {"cny": 7.2, "inr": 84.0, "krw": 1380.0, "brl": 5.6}
    services.exchange_rates_replace(
        rates=[services.RateIn(c, c.upper(), c.upper(), "fiat", 60000.0 * r) for c, r in fiat.items()],
        fetched_at=now,
    )
    for minutes in (61, 1):
        services.global_snapshot_record(
            row=services.GlobalIn(now - timedelta(minutes=minutes), 3e12, 1e11, 55.0, 12.0, 15000, 1046, 1.2),
            fetched_at=now,
        )
    return ids


def write_hourly(coin_id: int, n: int, hour0: datetime, *, seed: int, start: float, last_open: bool = True):
    o, h, lo, c = random_walk(seed, n, start)
    first = hour0 - timedelta(hours=n - 1 if last_open else n)
    rows = [
        services.CandleRow(
            coin_id, "1h", first + timedelta(hours=i), float(o[i]), float(h[i]), float(lo[i]), float(c[i]),
            None, 1e9 + i, (1e11 + i) * (1 + 0.001 * i), None, False,
        )
        for i in range(n)
    ]  # fmt: skip
    return services.candles_upsert(rows=rows, source="test")
