"""The API over data written by the ingestion pipeline (CoinGecko simulator → backfill → store)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import talib
from django.db import connection

from ingestion import pipeline
from ingestion.coingecko import RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from tests.conftest import simulator_client

SIM_NOW = datetime(2026, 3, 20, 0, 0, tzinfo=UTC)


@pytest.fixture
def backfilled(db, django_capture_on_commit_callbacks):
    clock = ManualClock(SIM_NOW)
    sim = Simulator(SimulatorConfig(coins=12, seed=11), clock=clock)
    client = simulator_client(
        sim,
        clock=clock,
        rate_limit_per_min=10_000,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_total=5, retry_after_cap=1),
    )
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.sync_universe(client, now=SIM_NOW)
        with connection.cursor() as cur:
            cur.execute("SELECT upstream_id FROM marketdata_coin ORDER BY id LIMIT 1")
            coin = cur.fetchone()[0]
        summary = pipeline.backfill(client, coins=[coin], timeframe="1h", days=10, now=SIM_NOW)
    client.close()
    assert summary.rows_written > 200, summary.as_dict()
    return coin


def test_candles_and_indicators_over_backfilled_history(client, backfilled):
    coin = backfilled
    with connection.cursor() as cur:
        cur.execute(
            "SELECT k.bucket_start, k.high, k.low, k.close FROM marketdata_candle k "
            "JOIN marketdata_coin c ON c.id = k.coin_id WHERE c.upstream_id = %s AND k.timeframe = '1h' "
            "ORDER BY k.bucket_start",
            [coin],
        )
        rows = cur.fetchall()
    times = [r[0].strftime("%Y-%m-%dT%H:%M:%SZ") for r in rows]
    high, low, close = (np.array([r[i] for r in rows]) for i in (1, 2, 3))

    candles = client.get(f"/v1/coins/{coin}/candles", {"timeframe": "1h", "order": "asc", "limit": 5000})
    assert candles.status_code == 200, candles.content
    data = candles.json()["data"]
    assert [c["time"] for c in data] == times
    assert [c["close"] for c in data] == list(close)
    assert all(c["closed"] for c in data)
    assert candles["Cache-Control"] == "private, max-age=10"  # no `end`: newer candles may still land

    for name, ref, extra in [
        ("rsi", talib.RSI(close, 14), {}),
        ("atr", talib.ATR(high, low, close, 14), {}),
        ("macd", talib.MACD(close, 12, 26, 9)[1], {}),
    ]:
        body = client.get(
            f"/v1/coins/{coin}/indicators/{name}", {"timeframe": "1h", "order": "asc", "limit": 5000, **extra}
        ).json()
        key = "signal" if name == "macd" else "value"
        got = [p[key] for p in body["data"]]
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert (g is None) if np.isnan(r) else g == pytest.approx(r, rel=1e-9, abs=1e-9 * close.max())

    end = rows[-5][0].isoformat()
    closed_range = client.get(f"/v1/coins/{coin}/candles", {"timeframe": "1h", "end": end, "limit": 10})
    assert closed_range["Cache-Control"] == "private, max-age=86400"
