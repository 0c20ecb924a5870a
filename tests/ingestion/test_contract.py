"""Contract tests: recorded real CoinGecko payloads and the simulator's answers to the same requests
go through the same parser and are compared field by field (keys, JSON types, nullability, formats)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ingestion.coingecko import (
    parse_coins_list,
    parse_coins_markets,
    parse_error_body,
    parse_market_chart,
    parse_ohlc,
    parse_ping,
    parse_simple_price,
)
from ingestion.simulator.protocol import RATE_LIMIT_BODY

from .conftest import load_fixture

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REAL_MARKETS = "coins_markets.page1.per_page100.real-2023-01-08.json"
# README: these may be null for small coins
NULLABLE = {
    "current_price", "market_cap", "market_cap_rank", "fully_diluted_valuation", "total_volume", "high_24h",
    "low_24h", "price_change_24h", "price_change_percentage_24h", "market_cap_change_24h",
    "market_cap_change_percentage_24h", "circulating_supply", "total_supply", "max_supply", "ath",
    "ath_change_percentage", "ath_date", "atl", "atl_change_percentage", "atl_date", "roi",
}  # fmt: skip


def json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def kinds_by_key(items: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in items:
        for key, value in item.items():
            out.setdefault(key, set()).add(json_kind(value))
    return out


def test_markets_page_matches_real_payload_field_by_field(sim_http, sim):
    real = load_fixture(REAL_MARKETS)
    simulated = sim_http.get("/coins/markets", params={"vs_currency": "usd", "per_page": 250}).json()
    assert len(simulated) == 250
    assert all(list(item) == list(real[0]) for item in real)
    assert all(list(item) == list(real[0]) for item in simulated), "same keys in the same order"
    real_kinds, sim_kinds = kinds_by_key(real), kinds_by_key(simulated)
    for key, kinds in sim_kinds.items():
        allowed = real_kinds[key] | ({"null"} if key in NULLABLE else set())
        assert kinds <= allowed, f"{key}: simulator sends {kinds}, real sends {real_kinds[key]}"
    for items in (real, simulated):
        for item in items:
            assert ISO_MS_Z.match(item["last_updated"])
            for date_key in ("ath_date", "atl_date"):
                assert item[date_key] is None or ISO_MS_Z.match(item[date_key])
            assert item["image"].startswith("https://assets.coingecko.com/coins/images/")
            if item["roi"] is not None:
                assert set(item["roi"]) == {"times", "currency", "percentage"}
    assert [i["market_cap_rank"] for i in simulated] == list(range(1, 251))
    assert [i["id"] for i in simulated[:2]] == [i["id"] for i in real[:2]]  # the universe's head is real


def test_real_and_simulated_markets_parse_without_rejects(sim_http, sim):
    real = parse_coins_markets(load_fixture(REAL_MARKETS), now=datetime(2023, 1, 8, 17, tzinfo=UTC))
    simulated = parse_coins_markets(
        sim_http.get("/coins/markets", params={"vs_currency": "usd", "per_page": 100}).json(), now=sim.now()
    )
    assert (len(real.records), real.rejects) == (100, [])
    assert (len(simulated.records), simulated.rejects) == (100, [])
    assert {type(getattr(real.records[0], f)) for f in ("current_price", "market_cap")} == {
        type(getattr(simulated.records[0], f)) for f in ("current_price", "market_cap")
    }


def test_coins_list_shape_matches_and_ids_are_real(sim_http):
    real = load_fixture("coins_list.head300.real-2023-01-08.json")
    simulated = sim_http.get("/coins/list").json()
    assert {tuple(item) for item in real} == {tuple(item) for item in simulated} == {("id", "symbol", "name")}
    assert parse_coins_list(real).rejects == [] and parse_coins_list(simulated).rejects == []
    with_platforms = sim_http.get("/coins/list", params={"include_platform": "true"}).json()
    assert all(isinstance(item["platforms"], dict) for item in with_platforms)
    real_ids = {i["id"] for i in real}
    assert {"bitcoin", "ethereum", "tether"} <= {i["id"] for i in simulated} & real_ids


def test_simple_price_keys_and_types_match_documented_example(sim_http, sim):
    real = load_fixture("simple_price.openapi-example.json")
    flags = dict.fromkeys(("include_market_cap", "include_24hr_vol", "include_24hr_change"), "true")
    flags["include_last_updated_at"] = "true"
    simulated = sim_http.get(
        "/simple/price", params={"ids": "bitcoin,ethereum", "vs_currencies": "usd", **flags}
    ).json()
    assert set(simulated) == {"bitcoin", "ethereum"}
    assert set(simulated["bitcoin"]) == set(real["bitcoin"])
    assert isinstance(simulated["bitcoin"]["last_updated_at"], int)
    assert kinds_by_key(list(simulated.values())) == kinds_by_key(list(real.values()))
    assert parse_simple_price(real, now=datetime(2024, 3, 26, tzinfo=UTC)).rejects == []
    parsed = parse_simple_price(simulated, now=sim.now())
    assert parsed.rejects == [] and len(parsed.records) == 2
    bare = sim_http.get("/simple/price", params={"ids": "bitcoin", "vs_currencies": "usd"}).json()
    assert set(bare["bitcoin"]) == {"usd"}


def test_market_chart_shapes_match_documented_examples(sim_http, sim):
    for fixture, path, params in (
        ("market_chart.openapi-example.json", "/coins/bitcoin/market_chart", {"days": "3"}),
        (
            "market_chart_range.openapi-example.json",
            "/coins/bitcoin/market_chart/range",
            {"from": sim.now().timestamp() - 86400 * 3, "to": sim.now().timestamp()},
        ),
    ):
        real = load_fixture(fixture)
        simulated = sim_http.get(path, params={"vs_currency": "usd", **params}).json()
        assert list(simulated) == list(real) == ["prices", "market_caps", "total_volumes"]
        for series in simulated.values():
            assert all(len(p) == 2 and isinstance(p[0], int) and json_kind(p[1]) == "number" for p in series)
        assert parse_market_chart(real, now=datetime(2024, 4, 2, tzinfo=UTC)).rejects == []
        parsed = parse_market_chart(simulated, now=sim.now())
        assert parsed.rejects == [] and len(parsed.records) == len(simulated["prices"])


def test_ohlc_shape_matches_documented_example(sim_http, sim):
    real = load_fixture("ohlc.openapi-example.json")
    simulated = sim_http.get("/coins/bitcoin/ohlc", params={"vs_currency": "usd", "days": "7"}).json()
    for rows in (real, simulated):
        assert all(len(r) == 5 and isinstance(r[0], int) for r in rows)
        assert all(json_kind(v) == "number" for r in rows for v in r[1:])
    # the example's candles are 4 hours apart, like the simulator's 7-day answer
    assert real[1][0] - real[0][0] == simulated[1][0] - simulated[0][0] == 4 * 3600 * 1000
    assert parse_ohlc(real, now=datetime(2024, 3, 3, tzinfo=UTC)).rejects == []
    assert parse_ohlc(simulated, now=sim.now()).rejects == []


def test_ping_and_error_bodies_match_real_ones(sim_http):
    assert sim_http.get("/ping").json() == load_fixture("ping.openapi-example.json")
    assert parse_ping(sim_http.get("/ping").json()) == "(V3) To the Moon!"
    errors = load_fixture("errors.readme-examples.json")
    assert errors["rate_limit_429"] == RATE_LIMIT_BODY
    assert parse_error_body(errors["nested_10012_401"])[0] == 10012
    assert parse_error_body(errors["flat_404"]) == (None, "coin not found")
    assert (
        sim_http.get("/coins/nope-coin/ohlc", params={"vs_currency": "usd", "days": "1"}).json()
        == errors["flat_404"]
    )
    bad_vs = sim_http.get("/coins/markets", params={"vs_currency": "xxx"})
    assert (bad_vs.status_code, bad_vs.json()) == (400, errors["flat_400"])
