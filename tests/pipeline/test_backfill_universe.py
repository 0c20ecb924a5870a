"""Backfill (OHLC close time → bucket start, watermarks, idempotency), universe sync, commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.core.management import call_command

from ingestion import pipeline
from ingestion.coingecko import CoinGeckoClient, RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata import selectors, services
from marketdata.models import Coin, SeriesWatermark
from tests.conftest import simulator_client


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(minute=17, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def sim(now):
    return Simulator(SimulatorConfig(coins=30, seed=9), clock=ManualClock(now))


@pytest.fixture
def client(sim, now):
    c = simulator_client(
        sim,
        clock=ManualClock(now),
        retry=RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005, retry_after_cap=0.005),
    )
    yield c
    c.close()


def _raw_ohlc(sim, coin, start, end):
    with httpx.Client(
        transport=httpx.WSGITransport(app=sim),
        base_url="http://sim/api/v3",
        headers={"x-cg-pro-api-key": "k"},
    ) as http:
        r = http.get(
            f"/coins/{coin}/ohlc/range",
            params={
                "vs_currency": "usd",
                "from": int(start.timestamp()),
                "to": int(end.timestamp()),
                "interval": "hourly",
            },
        )
        r.raise_for_status()
        return r.json()


def test_backfill_maps_close_times_to_bucket_starts_and_resumes(db, sim, client, now):
    coin = sim.coin_ids[0]
    services.coins_upsert(coins=[services.CoinIn(coin, "x", "X")])
    result = pipeline.backfill(client, coins=[coin], timeframe="1h", days=3, now=now)
    assert result.rows_written > 0
    coin_id = Coin.objects.get(upstream_id=coin).pk
    stored = {
        r[0]: r[1:]
        for r in selectors.candles_range(
            coin_id=coin_id,
            timeframe="1h",
            limit=10_000,
            fields=("bucket_start", "open", "high", "low", "close", "closed"),
        )
    }
    raw = _raw_ohlc(sim, coin, now - timedelta(days=3), now)
    assert raw
    for close_ms, o, h, lo, c in raw:
        close = datetime.fromtimestamp(close_ms / 1000, tz=UTC)
        start = close - timedelta(hours=1)  # CoinGecko stamps the CLOSE of the candle
        assert stored[start][:4] == (o, h, lo, c)
        assert stored[start][4] == (close <= now)
    assert max(stored) > now - timedelta(hours=2)
    # 1h history rolled up into 1d
    assert selectors.candles_range(coin_id=coin_id, timeframe="1d")
    mark = SeriesWatermark.objects.get(coin_id=coin_id, timeframe="1h", source="history")
    assert now - timedelta(hours=1) <= mark.until <= now

    # resumable: a second run starts at the watermark and rewrites nothing
    again = pipeline.backfill(client, coins=[coin], timeframe="1h", days=3, now=now)
    assert again.rows_written == 0 and again.calls <= 2
    # an explicit re-fetch of the whole range is idempotent and never moves the watermark back
    refetch = pipeline.backfill(client, coins=[coin], timeframe="1h", start=now - timedelta(days=3), now=now)
    assert refetch.rows_written == 0 and refetch.details["candles"]["unchanged"] > 48
    assert SeriesWatermark.objects.get(pk=mark.pk).until == mark.until


def test_backfill_of_fine_timeframes_rebuilds_from_ticks_or_refuses(db, client, now):
    with pytest.raises(ValueError, match="no finer history"):
        pipeline.backfill(client, coins=["bitcoin"], timeframe="1m", days=1)
    ids = services.coins_upsert(coins=[services.CoinIn("bitcoin", "btc", "Bitcoin")])
    t = now.replace(minute=0) - timedelta(hours=2)
    services.ticks_record(
        ticks=[services.TickIn(ids["bitcoin"], t + timedelta(seconds=s), 1.0 + s) for s in (5, 30)]
    )
    result = pipeline.backfill(
        client, coins=["bitcoin"], timeframe="1m", start=t, end=t + timedelta(minutes=5), now=now
    )
    assert result.calls == 0 and result.details["rebuilt_from_ticks"]
    (candle,) = selectors.candles_range(coin_id=ids["bitcoin"], timeframe="1m")
    assert candle[:5] == (t, 6.0, 31.0, 6.0, 31.0)
    assert selectors.candles_range(coin_id=ids["bitcoin"], timeframe="1h")


def test_sync_universe_adds_deactivates_and_never_deletes(db, sim, client):
    services.coins_upsert(coins=[services.CoinIn("delisted-coin", "dl", "Delisted")])
    result = pipeline.sync_universe(client)
    assert result.details["added"] == len(sim.coin_ids)
    assert result.details["deactivated"] == 1
    gone = Coin.objects.get(upstream_id="delisted-coin")
    assert gone.active is False
    assert Coin.objects.filter(active=True).count() == len(sim.coin_ids)
    again = pipeline.sync_universe(client)
    assert again.details["added"] == 0 and again.details["deactivated"] == 0


def test_refresh_markets_command_runs_one_cycle(db, sim, now, settings, monkeypatch, capsys):
    from ingestion.coingecko import client as client_module

    original = CoinGeckoClient.from_settings.__func__

    def from_settings(cls, **overrides):
        overrides.setdefault("transport", httpx.WSGITransport(app=sim))
        return original(cls, **overrides)

    monkeypatch.setattr(client_module.CoinGeckoClient, "from_settings", classmethod(from_settings))
    settings.COINGECKO_BASE_URL = "http://sim/api/v3"
    settings.COINGECKO_API_KEYS = ["k1"]
    sim.clock.set(datetime.now(UTC))
    call_command("refresh_markets")
    out = capsys.readouterr().out
    assert "30 coins polled" in out and "30 new ticks" in out
    # one candle per tick minute, plus the current minute carried forward for coins whose last
    # tick fell in the previous minute
    inserted = int(re.search(r"1m candles: (\d+) inserted", out).group(1))
    assert 30 <= inserted <= 60
    assert Coin.objects.count() == 30
