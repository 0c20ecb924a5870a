"""The fast path (/simple/price for the top coins every 20 s) and the reference data (exchange rates,
the global market) against the in-process simulator: what lands in the store equals the simulator's
ground truth at the poll time, through the one write path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from ingestion import pipeline
from ingestion.coingecko import RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata.models import ExchangeRate, GlobalSnapshot, MarketSnapshot, Tick
from tests.conftest import simulator_client

T0 = datetime(2026, 11, 20, 12, 0, 7, tzinfo=UTC)


@pytest.fixture
def sim_env(db):
    clock = ManualClock(T0)
    sim = Simulator(SimulatorConfig(coins=300, seed=11, head_tick_period=(1.0, 3.0)), clock=clock)
    client = simulator_client(sim, clock=clock, retry=RetryPolicy(max_attempts=2, base_delay=0.001))
    yield sim, clock, client
    client.close()


def _now(clock) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)


def _snapshot(upstream_id: str) -> MarketSnapshot:
    return MarketSnapshot.objects.select_related("coin").get(coin__upstream_id=upstream_id)


def test_fast_path_refreshes_top_coin_prices_and_keeps_the_details(sim_env, settings):
    sim, clock, client = sim_env
    first = pipeline.refresh_markets(client, now=_now(clock))
    assert first.details["coins_polled"] == 300 and first.calls == 3  # two pages and the empty one
    btc = _snapshot("bitcoin")
    truth = next(r for r in sim.markets_at(_now(clock)) if r["id"] == "bitcoin")
    assert btc.circulating_supply == truth["circulating_supply"]
    assert btc.max_supply == truth["max_supply"] and btc.ath == truth["ath"]
    assert btc.image_url == truth["image"] and btc.details_updated == _now(clock)
    assert btc.change_7d_pct is not None and btc.change_30d_pct is not None

    clock.advance(20)
    settings.INGESTION_FAST_COINS = 50
    fast = pipeline.refresh_prices_fast(client, now=_now(clock))
    assert fast.calls == 1 and fast.details["coins_asked"] == 50 and fast.details["coins_polled"] == 50
    tick = sim.tick_at_or_before("bitcoin", _now(clock))
    btc_after = _snapshot("bitcoin")
    # /simple/price's last_updated_at is in whole seconds
    assert btc_after.price == tick.price and btc_after.last_updated == tick.time.replace(microsecond=0)
    assert btc_after.last_updated > btc.last_updated  # the head ticks every 1-3 s: a newer price
    assert btc_after.circulating_supply == btc.circulating_supply and btc_after.ath == btc.ath  # kept
    assert btc_after.rank == btc.rank and btc_after.high_24h >= btc_after.price >= btc_after.low_24h
    assert Tick.objects.filter(coin__upstream_id="bitcoin", time=btc_after.last_updated).exists()
    # the 1m candle of the minute closes at the fast path's price
    with connection.cursor() as cur:
        cur.execute(
            "SELECT k.close FROM marketdata_candle k JOIN marketdata_coin c ON c.id = k.coin_id "
            "WHERE c.upstream_id = 'bitcoin' AND k.timeframe = '1m' AND k.bucket_start = %s",
            [_now(clock).replace(second=0, microsecond=0)],
        )
        assert cur.fetchone()[0] == tick.price
    # a coin outside the top 50 was not touched by the fast path
    tail = MarketSnapshot.objects.order_by("market_cap").select_related("coin").first()
    assert tail.fetched_at == T0

    # the next minute walk: prices the fast path already has only refresh the details
    walk = pipeline.refresh_markets(client, now=_now(clock))
    assert walk.details["details_only"] >= 1  # the same upstream second and price: no second tick
    assert Tick.objects.filter(coin__upstream_id="bitcoin", time__gt=btc_after.last_updated).count() == 0
    assert _snapshot("bitcoin").details_updated == _now(clock)


def test_fast_path_waits_for_the_first_walk(sim_env):
    _sim, clock, client = sim_env
    summary = pipeline.refresh_prices_fast(client, now=_now(clock))
    assert summary.calls == 0 and "skipped" in summary.details


def test_exchange_rates_and_global_are_stored(sim_env):
    sim, clock, client = sim_env
    rates = pipeline.refresh_exchange_rates(client, now=_now(clock))
    assert rates.rows_written >= 10
    eur = ExchangeRate.objects.get(code="eur")
    assert eur.kind == "fiat" and eur.per_usd == pytest.approx(0.92, rel=1e-6)
    btc_price = sim.tick_at_or_before("bitcoin", _now(clock)).price
    assert ExchangeRate.objects.get(code="usd").per_btc == pytest.approx(btc_price, rel=1e-6)

    g = pipeline.refresh_global(client, now=_now(clock))
    assert g.rows_written == 1
    again = pipeline.refresh_global(client, now=_now(clock))  # same upstream updated_at: no new row
    assert again.rows_written == 0 and GlobalSnapshot.objects.count() == 1
    row = GlobalSnapshot.objects.get()
    records = sim.markets_at(_now(clock))
    total = sum(r["market_cap"] for r in records)
    assert row.total_market_cap == pytest.approx(total, rel=1e-9)
    btc = next(r for r in records if r["id"] == "bitcoin")
    assert row.btc_dominance == pytest.approx(btc["market_cap"] / total * 100, rel=1e-9)
    assert row.active_coins == len(records)
    clock.advance(60)
    pipeline.refresh_global(client, now=_now(clock))
    assert GlobalSnapshot.objects.count() == 2
    assert timedelta(0) < _now(clock) - row.time <= timedelta(seconds=61)
