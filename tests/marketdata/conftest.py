"""Fixtures of the market data store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketdata import services


@pytest.fixture
def t0() -> datetime:
    """An hour-aligned reference time a day ago (inside every retention window)."""
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(days=1)


@pytest.fixture
def coins(db) -> list[int]:
    ids = services.coins_upsert(coins=[services.CoinIn(f"coin-{i}", f"c{i}", f"Coin {i}") for i in range(3)])
    return [ids[f"coin-{i}"] for i in range(3)]
