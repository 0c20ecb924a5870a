"""Snapshot details, quote currencies (vs=) and the global market through the public API, on data
written by the store's write path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marketdata import services
from marketdata.api import views
from marketdata.models import ExchangeRate, GlobalSnapshot


def get(client, path, **params):
    return client.get(path, params)


@pytest.fixture
def details(market, django_capture_on_commit_callbacks):
    """bitcoin and ethereum get their /coins/markets details; rates for eur are stored."""
    now = datetime.now(UTC)
    ath_date = datetime(2025, 10, 6, 18, 57, 42, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        services.snapshots_upsert(
            rows=[
                services.SnapshotIn(
                    market["bitcoin"], 60000.0, 1.2e12, 1, 3e10, 61000.0, 59000.0, 1.5, now, now,
                    0.5, -2.0, 10.0, 19.8e6, 21e6, 21e6, 1.26e12, 120000.0, ath_date, 60.0, ath_date,
                    "https://img.example/btc.png",
                ),
                services.SnapshotIn(
                    market["ethereum"], 3000.0, 3.6e11, 2, 1e10, 3100.0, 2900.0, -0.5, now, now,
                    1.0, 4.0, -5.0, 1.2e8, 1.2e8, None, None, 4800.0, ath_date, 0.4, ath_date, None,
                ),
            ]
        )  # fmt: skip
        services.exchange_rates_replace(
            rates=[
                services.RateIn("usd", "US Dollar", "$", "fiat", 60000.0),
                services.RateIn("eur", "Euro", "€", "fiat", 55200.0),
                services.RateIn("btc", "Bitcoin", "BTC", "crypto", 1.0),
            ],
            fetched_at=now,
        )
    return market


def test_markets_and_coin_detail_carry_the_details(client, details):
    btc = get(client, "/v1/coins/bitcoin").json()["market"]
    assert btc["circulating_supply"] == 19.8e6 and btc["max_supply"] == 21e6
    assert btc["fully_diluted_valuation"] == 1.26e12 and btc["image_url"] == "https://img.example/btc.png"
    assert btc["ath"] == 120000.0 and btc["ath_date"] == "2025-10-06T18:57:42Z"
    assert btc["ath_change_pct"] == pytest.approx(-50.0) and btc["atl_change_pct"] == pytest.approx(99900.0)
    assert (btc["change_1h_pct"], btc["change_7d_pct"], btc["change_30d_pct"]) == (0.5, -2.0, 10.0)
    body = get(client, "/v1/markets").json()
    assert body["vs"] == "usd"
    eth = next(m for m in body["data"] if m["id"] == "ethereum")
    assert eth["max_supply"] is None and eth["image_url"] is None and eth["change_7d_pct"] == 4.0


def test_prices_include_groups_are_opt_in_and_validated(client, details):
    plain = get(client, "/v1/prices", ids="bitcoin").json()["data"]["bitcoin"]
    assert set(plain) == {"price", "market_cap", "volume_24h", "change_24h_pct", "last_updated"}
    body = get(client, "/v1/prices", ids="bitcoin,ethereum", include="supply,changes").json()
    entry = body["data"]["bitcoin"]
    assert set(entry) == set(plain) | {
        "circulating_supply", "total_supply", "max_supply", "fully_diluted_valuation",
        "change_1h_pct", "change_7d_pct", "change_30d_pct",
    }  # fmt: skip
    assert entry["circulating_supply"] == 19.8e6 and entry["change_30d_pct"] == 10.0
    every = get(client, "/v1/prices", ids="bitcoin", include="rank,range_24h,ath_atl,image").json()
    assert every["data"]["bitcoin"]["rank"] == 1 and every["data"]["bitcoin"]["high_24h"] == 61000.0
    assert every["data"]["bitcoin"]["image_url"] == "https://img.example/btc.png"
    bad = get(client, "/v1/prices", ids="bitcoin", include="supply,logo")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"
    assert bad.json()["errors"][0]["parameter"] == "include" and "image" in bad.json()["errors"][0]["detail"]


def test_vs_converts_fiat_with_stored_rates_and_crypto_with_our_prices(client, details):
    eur = get(client, "/v1/prices", ids="ethereum", vs="EUR", include="ath_atl").json()
    assert eur["vs"] == "eur"
    e = eur["data"]["ethereum"]
    assert e["price"] == pytest.approx(3000.0 * 0.92) and e["market_cap"] == pytest.approx(3.6e11 * 0.92)
    assert e["ath"] == pytest.approx(4800.0 * 0.92) and e["change_24h_pct"] == -0.5
    in_btc = get(client, "/v1/prices", ids="ethereum,bitcoin", vs="btc", include="changes,ath_atl").json()
    e = in_btc["data"]["ethereum"]
    assert e["price"] == pytest.approx(0.05) and e["volume_24h"] == pytest.approx(1e10 / 60000.0)
    assert e["change_24h_pct"] == pytest.approx((0.995 / 1.015 - 1) * 100)
    assert e["change_7d_pct"] == pytest.approx((1.04 / 0.98 - 1) * 100)
    assert e["ath"] is None and e["atl"] is None  # no BTC price at those dates
    assert in_btc["data"]["bitcoin"]["price"] == pytest.approx(1.0)
    assert in_btc["data"]["bitcoin"]["change_24h_pct"] == pytest.approx(0.0)
    markets = get(client, "/v1/markets", vs="eur").json()
    assert markets["vs"] == "eur" and [m["id"] for m in markets["data"]] == ["bitcoin", "ethereum"]
    assert markets["data"][0]["price"] == pytest.approx(60000.0 * 0.92)


def test_unknown_vs_is_a_400_listing_the_supported_ones(client, details):
    response = get(client, "/v1/prices", ids="bitcoin", vs="doge")
    assert response.status_code == 400
    problem = response.json()
    assert problem["errors"][0]["parameter"] == "vs"
    for code in ("usd", "eur", "btc", "eth"):
        assert code in problem["errors"][0]["detail"]
    assert get(client, "/v1/markets", vs="xyz").status_code == 400


def test_a_supported_fiat_without_a_stored_rate_is_503(client, details):
    ExchangeRate.objects.filter(code="jpy").delete()
    response = get(client, "/v1/prices", ids="bitcoin", vs="jpy")
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "jpy" in response.json()["detail"]


@pytest.fixture
def global_rows(db, django_capture_on_commit_callbacks):
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(0, 180, 5):  # every 5 minutes for 3 hours
            services.global_snapshot_record(
                row=services.GlobalIn(
                    t0 + timedelta(minutes=i), 3e12 + i * 1e9, 1e11, 55.0 + i / 100, 12.0, 15000, 1046, 1.5
                ),
                fetched_at=t0 + timedelta(minutes=i, seconds=5),
            )
    return t0


def test_global_latest_and_history(client, global_rows, monkeypatch):
    t0 = global_rows
    GlobalSnapshot.objects.filter(time__lt=t0).delete()
    latest = get(client, "/v1/global").json()
    assert latest["total_market_cap"] == 3e12 + 175e9 and latest["btc_dominance"] == pytest.approx(56.75)
    assert latest["active_coins"] == 15000 and latest["markets"] == 1046
    hourly = get(client, "/v1/global/history", start=t0.isoformat(), interval="1h").json()
    assert hourly["interval"] == "1h" and len(hourly["data"]) == 3
    first = hourly["data"][0]
    assert first["time"] == t0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["observed_at"] == (t0 + timedelta(minutes=55)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["total_market_cap"] == 3e12 + 55e9  # the last snapshot of the hour
    five = get(client, "/v1/global/history", start=t0.isoformat(), interval="5m").json()["data"]
    assert len(five) == 36
    wide = get(client, "/v1/global/history", start="2000-01-01", interval="5m")
    assert wide.status_code == 200 and len(wide.json()["data"]) == 36  # bounded by points, not width
    monkeypatch.setattr(views, "MAX_GLOBAL_POINTS", 35)
    too_many = get(client, "/v1/global/history", start="2000-01-01", interval="5m")
    assert too_many.status_code == 400 and too_many.json()["errors"][0]["parameter"] == "start"
    for bad, parameter in (({"interval": "2h"}, "interval"), ({"end": "soon"}, "end"), ({"x": "1"}, "x")):
        response = get(client, "/v1/global/history", **bad)
        assert response.status_code == 400 and response.json()["errors"][0]["parameter"] == parameter
    assert get(client, "/v1/global", start="2026-01-01").status_code == 400  # takes no parameter


def test_global_before_the_first_snapshot_is_503(client, db):
    GlobalSnapshot.objects.all().delete()
    assert get(client, "/v1/global").status_code == 503
