"""Snapshot details, /exchange_rates and /global: validation of the parsed fields, and the simulator
serving them consistently with its price paths."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from ingestion.coingecko import CoinGeckoShapeError, parse_coins_markets, parse_exchange_rates, parse_global
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig

from .conftest import load_fixture

NOW = datetime(2023, 1, 8, 17, tzinfo=UTC)


def _btc() -> dict:
    item = copy.deepcopy(load_fixture("coins_markets.page1.per_page100.real-2023-01-08.json")[0])
    item.update(
        price_change_percentage_1h_in_currency=0.12,
        price_change_percentage_24h_in_currency=0.14,
        price_change_percentage_7d_in_currency=-1.5,
        price_change_percentage_30d_in_currency=2.25,
    )
    return item


def test_details_of_a_real_record_are_parsed():
    rec = parse_coins_markets([_btc()], now=NOW).records[0]
    assert (rec.circulating_supply, rec.total_supply, rec.max_supply) == (19256218, 21000000, 21000000)
    assert rec.fully_diluted_valuation == 355966338864 and rec.ath == 69045 and rec.atl == 67.81
    assert rec.ath_date == datetime(2021, 11, 10, 14, 24, 11, 849000, tzinfo=UTC)
    assert rec.image.startswith("https://assets.coingecko.com/")
    assert (rec.price_change_percentage_1h, rec.price_change_percentage_7d) == (0.12, -1.5)
    assert rec.price_change_percentage_30d == 2.25


@pytest.mark.parametrize(
    ("field", "value", "attr"),
    [
        ("circulating_supply", -5, "circulating_supply"),
        ("max_supply", "NaN", "max_supply"),
        ("fully_diluted_valuation", "abc", "fully_diluted_valuation"),
        ("ath", 0, "ath"),
        ("atl", -1.0, "atl"),
        ("ath_date", "2099-01-01T00:00:00.000Z", "ath_date"),  # in the future
        ("atl_date", "yesterday", "atl_date"),
        ("image", "javascript:alert(1)", "image"),
        ("image", "https://x/" + "a" * 600, "image"),
        ("price_change_percentage_1h_in_currency", -150.0, "price_change_percentage_1h"),
        ("price_change_percentage_7d_in_currency", float("inf"), "price_change_percentage_7d"),
    ],
)
def test_an_unusable_detail_becomes_null_and_keeps_the_record(field, value, attr):
    item = _btc()
    item[field] = value
    result = parse_coins_markets([item], now=NOW)
    assert not result.rejects and getattr(result.records[0], attr) is None
    assert result.records[0].current_price == item["current_price"]


def test_exchange_rates_and_global_shapes():
    rates = parse_exchange_rates(
        {
            "rates": {
                "btc": {"name": "Bitcoin", "unit": "BTC", "value": 1, "type": "crypto"},
                "usd": {"name": "US Dollar", "unit": "$", "value": 67187.3, "type": "fiat"},
                "bad": {"name": "Bad", "unit": "B", "value": -1, "type": "fiat"},
            }
        }
    )
    assert [r.code for r in rates.records] == ["btc", "usd"] and len(rates.rejects) == 1
    with pytest.raises(CoinGeckoShapeError):
        parse_exchange_rates({"data": {}})
    payload = {
        "data": {
            "active_cryptocurrencies": 13690,
            "markets": 1046,
            "total_market_cap": {"usd": 2.72e12, "btc": 3.9e7},
            "total_volume": {"usd": 7.1e10},
            "market_cap_percentage": {"btc": 50.4, "eth": 14.9},
            "market_cap_change_percentage_24h_usd": 1.72,
            "updated_at": 1672974000,
        }
    }
    g = parse_global(payload, now=NOW)
    assert g.total_market_cap == 2.72e12 and g.btc_dominance == 50.4 and g.active_coins == 13690
    assert g.updated_at == datetime(2023, 1, 6, 3, 0, tzinfo=UTC)
    broken = copy.deepcopy(payload)
    broken["data"]["total_market_cap"] = {"btc": 1.0}
    with pytest.raises(CoinGeckoShapeError):
        parse_global(broken, now=NOW)


def test_simulator_reference_data_matches_its_markets(sim_http, sim):
    now = sim.now()
    records = sim.markets_at(now)
    by_id = {r["id"]: r for r in records}
    rates = sim_http.get("/exchange_rates").json()["rates"]
    btc_usd = by_id["bitcoin"]["current_price"]
    assert rates["usd"]["value"] == pytest.approx(btc_usd, rel=1e-6)
    assert rates["eth"]["value"] == pytest.approx(btc_usd / by_id["ethereum"]["current_price"], rel=1e-3)
    eur_markets = sim_http.get("/coins/markets", params={"vs_currency": "eur", "ids": "ethereum"}).json()[0][
        "current_price"
    ]
    eur_per_usd = rates["eur"]["value"] / rates["usd"]["value"]
    assert eur_markets == pytest.approx(by_id["ethereum"]["current_price"] * eur_per_usd, rel=1e-6)
    data = sim_http.get("/global").json()["data"]
    total = sum(r["market_cap"] for r in records)
    assert data["total_market_cap"]["usd"] == pytest.approx(total, rel=1e-9)
    assert data["total_volume"]["usd"] == pytest.approx(sum(r["total_volume"] for r in records), rel=1e-9)
    assert data["market_cap_percentage"]["btc"] == pytest.approx(by_id["bitcoin"]["market_cap"] / total * 100)
    assert data["active_cryptocurrencies"] == len(records)


def test_simulator_change_percentages_follow_the_price_path(sim_http, sim, clock):
    rec = sim_http.get(
        "/coins/markets",
        params={"vs_currency": "usd", "ids": "solana", "price_change_percentage": "1h,7d,30d"},
    ).json()[0]
    now = sim.now()
    for window, seconds in (("1h", 3600), ("7d", 7 * 86400), ("30d", 30 * 86400)):
        old = sim.tick_at_or_before("solana", now.timestamp() - seconds).price
        expected = round((rec["current_price"] / old - 1) * 100, 5)
        assert rec[f"price_change_percentage_{window}_in_currency"] == expected
    assert rec["fully_diluted_valuation"] >= rec["market_cap"] and rec["ath"] >= rec["current_price"]


def test_head_tick_period_makes_the_top_coins_tick_faster():
    clock = ManualClock("2026-03-01T12:00:00Z")
    fast = Simulator(SimulatorConfig(coins=150, seed=7, head_tick_period=(1.0, 3.0)), clock=clock)
    ticks = fast.ticks_between("bitcoin", clock() - 60, clock())
    assert len(ticks) >= 20  # every 1-3 s
    tail = fast.universe.ids[120]
    assert len(fast.ticks_between(tail, clock() - 600, clock())) <= 31  # the others: every 20-60 s
