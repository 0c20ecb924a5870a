"""Issue 12, the public market data contract: the OpenAPI document describes what the server does
(every property of every 200 answer, problem+json errors, parameter rules as schema keywords,
readable enum names, CSV as its own text/csv operation), one cursor paging style, ranked search and
helpful parameter errors."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from drf_spectacular.generators import SchemaGenerator

from marketdata import indicators, services
from marketdata.api import params

PUBLIC_PREFIXES = ("/v1/coins", "/v1/markets", "/v1/prices", "/v1/rankings", "/v1/screener", "/v1/candles")


@pytest.fixture(scope="module")
def openapi() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(openapi: dict, schema: dict) -> dict:
    while "$ref" in schema or ("allOf" in schema and len(schema["allOf"]) == 1):
        if "$ref" in schema:
            schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        else:
            schema = schema["allOf"][0]
    return schema


def _check(openapi: dict, schema: dict, value, where: str) -> None:
    """``value`` conforms to ``schema`` with no undeclared property, recursively."""
    schema = _resolve(openapi, schema)
    if value is None:
        assert schema.get("nullable"), f"{where}: null but not nullable"
        return
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        assert isinstance(value, dict), where
        undeclared = set(value) - set(schema["properties"])
        assert not undeclared, f"{where}: undeclared properties {undeclared}"
        assert set(schema.get("required", [])) <= set(value), f"{where}: missing required"
        for key, item in value.items():
            prop = schema["properties"][key]
            assert (
                "example" in _resolve(openapi, prop)
                or "$ref" in prop
                or "items" in prop
                or (prop.get("type") == "object")
                or "allOf" in prop
            ), f"{where}.{key}: no example"
            _check(openapi, prop, item, f"{where}.{key}")
    elif kind == "object":  # a map (additionalProperties)
        for key, item in value.items():
            _check(openapi, schema["additionalProperties"], item, f"{where}[{key}]")
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(openapi, schema["items"], item, f"{where}[{i}]")
    elif kind == "number":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), where
    elif kind == "boolean":
        assert isinstance(value, bool), where
    elif kind == "string":
        assert isinstance(value, str), where
        if "enum" in schema:
            assert value in schema["enum"], where


def _url(path: str) -> str:
    return path.replace("{coin_id}", "bitcoin")


REQUEST_PARAMS = {
    "/v1/prices": {"ids": "bitcoin,ethereum,dogecoin"},
    "/v1/screener": {"timeframe": "1h"},
    "/v1/candles": {"ids": "bitcoin,ethereum,dogecoin"},
    "/v1/candles.csv": {"ids": "bitcoin,ethereum"},
    "/v1/coins/{coin_id}/history": {"date": datetime.now(UTC).date().isoformat()},  # the data's last day
}


def test_every_public_operation_documents_what_the_server_returns(openapi, client, market):
    """Walk the generated schema: every public marketdata operation's 200 schema covers every key a
    real request returns (fixture data), each error is application/problem+json, enums have names."""
    from marketdata import screener

    screener.latest_indicators_refresh(timeframe="1h")
    operations = [(p, ops["get"]) for p, ops in openapi["paths"].items() if p.startswith(PUBLIC_PREFIXES)]
    assert len(operations) >= 8 + len(indicators.INDICATORS)
    for path, op in operations:
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (path, status)
        for p in op.get("parameters", []):
            schema = p["schema"]
            if "enum" in schema:
                assert len(schema["x-enum-varnames"]) == len(schema["enum"]), (path, p["name"])
            if p["name"] in ("limit", "offset") or schema.get("type") == "integer":
                assert "minimum" in schema and "maximum" in schema, (path, p["name"])
        content = op["responses"]["200"]["content"]
        r = client.get(_url(path), REQUEST_PARAMS.get(path, {}))
        assert r.status_code == 200, (path, r.content)
        if path.endswith(".csv"):
            assert list(content) == ["text/csv"] and r["Content-Type"].startswith("text/csv")
            continue
        assert list(content) == ["application/json"], path
        body = r.json()
        assert body, path
        _check(openapi, content["application/json"]["schema"], body, path)


def test_schema_states_the_parameter_rules(openapi):
    paths = openapi["paths"]
    prices = {p["name"]: p for p in paths["/v1/prices"]["get"]["parameters"]}
    assert prices["ids"]["required"] is True and prices["ids"]["schema"]["maxItems"] == 250
    rsi = {p["name"]: p["schema"] for p in paths["/v1/coins/{coin_id}/indicators/rsi"]["get"]["parameters"]}
    assert rsi["period"]["minimum"] == 2 and rsi["period"]["maximum"] == 1000
    atr = {p["name"]: p["schema"] for p in paths["/v1/coins/{coin_id}/indicators/atr"]["get"]["parameters"]}
    assert atr["period"]["minimum"] == 1
    candles = {p["name"]: p for p in paths["/v1/coins/{coin_id}/candles"]["get"]["parameters"]}
    kinds = {b["type"] + b.get("format", "") for b in candles["start"]["schema"]["oneOf"]}
    assert kinds == {"integer", "stringdate-time", "stringdate"}
    assert candles["timeframe"]["schema"]["x-enum-varnames"][
        candles["timeframe"]["schema"]["enum"].index("1h")
    ] == ("ONE_HOUR")
    for path in ("/v1/markets", "/v1/coins", "/v1/rankings", "/v1/screener"):
        ps = {p["name"]: p for p in paths[path]["get"]["parameters"]}
        assert ps["offset"]["deprecated"] is True and "cursor" in ps, path
        assert ps["limit"]["schema"]["minimum"] == 1, path
    assert "Timeframe" in openapi["components"]["schemas"]


@pytest.mark.parametrize(
    ("name", "value", "minimum", "maximum"),
    [("period", "1", 2, 1000), ("period", "1001", 2, 1000)],
)
def test_indicator_period_error_matches_the_documented_range(
    client, market, openapi, name, value, minimum, maximum
):
    r = client.get("/v1/coins/bitcoin/indicators/rsi", {name: value})
    assert r.status_code == 400
    assert (
        r.json()["errors"][0]["detail"] == f"{value} is out of range: must be between {minimum} and {maximum}"
    )
    assert client.get("/v1/coins/bitcoin/indicators/atr", {"period": "1"}).status_code == 200  # atr: 1 … 1000


def test_csv_is_its_own_operation_and_format_csv_is_a_kept_alias(client, market):
    r = client.get("/v1/coins/bitcoin/candles.csv", {"limit": 5})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    json_rows = client.get("/v1/coins/bitcoin/candles", {"limit": 5}).json()["data"]
    assert [row["time"] for row in rows] == [c["time"] for c in json_rows]
    assert 'rel="next"' in r["Link"] and "/candles.csv?" in r["Link"]
    alias = client.get("/v1/coins/bitcoin/candles", {"limit": 5, "format": "csv"})
    assert alias["Content-Type"].startswith("text/csv") and alias["ETag"] == r["ETag"]
    bad = client.get("/v1/coins/bitcoin/candles.csv", {"limit": "x"})
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"


def _walk(client, path, params_, key="id"):
    seen, pages = [], 0
    query = dict(params_)
    while True:
        r = client.get(path, query)
        assert r.status_code == 200, r.content
        body = r.json()
        seen += [row[key] for row in body["data"]]
        pages += 1
        if body["next_cursor"] is None:
            assert "Link" not in r
            return seen, pages
        link = re.match(r'<([^>]+)>; rel="next"', r["Link"]).group(1)
        assert "cursor=" + body["next_cursor"] in link and "offset=" not in link
        query = {**dict(params_), "cursor": body["next_cursor"]}
        query.pop("offset", None)


@pytest.fixture
def more_coins(market, django_capture_on_commit_callbacks):
    """Ten more coins with snapshots, two sharing bitcoin's symbol (btc) with smaller caps."""
    from datetime import UTC, datetime

    with django_capture_on_commit_callbacks(execute=True):
        coins = [services.CoinIn(f"coin{i:02d}", f"c{i}", f"Coin {i}") for i in range(8)]
        coins += [
            services.CoinIn("batcoin", "btc", "Batcoin"),
            services.CoinIn("bitcoin-cash", "bch", "Bitcoin Cash"),
        ]
        ids = services.coins_upsert(coins=coins)
        now = datetime.now(UTC)
        services.snapshots_upsert(
            rows=[
                services.SnapshotIn(
                    ids[c.upstream_id], 1.0, float(1e6 * (i % 3)), None, 1e3, 1, 1, 0.0, now, now
                )
                for i, c in enumerate(coins)
            ]
        )
    return ids


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/v1/coins", {"limit": 3}),
        ("/v1/coins", {"limit": 2, "q": "coin"}),
        ("/v1/markets", {"limit": 3}),
        ("/v1/markets", {"limit": 2, "order_by": "rank", "direction": "asc"}),
        ("/v1/rankings", {"limit": 3}),
    ],
)
def test_cursor_paging_walks_every_row_once_in_order(client, more_coins, path, query):
    everything = client.get(path, {**query, "limit": 250}).json()["data"]
    seen, pages = _walk(client, path, query)
    assert seen == [row["id"] for row in everything] and len(set(seen)) == len(seen)
    assert pages > 1


def test_offset_is_a_deprecated_alias(client, more_coins):
    first = client.get("/v1/markets", {"limit": 3}).json()
    by_offset = client.get("/v1/markets", {"limit": 3, "offset": 3}).json()
    by_cursor = client.get("/v1/markets", {"limit": 3, "cursor": first["next_cursor"]}).json()
    assert first["next_offset"] == 3 and by_offset["data"] == by_cursor["data"]
    assert by_cursor["next_offset"] is None
    both = client.get("/v1/markets", {"limit": 3, "offset": 1, "cursor": first["next_cursor"]}).json()
    assert both["data"] == client.get("/v1/markets", {"limit": 3, "offset": 4}).json()["data"]


@pytest.mark.parametrize("cursor", ["garbage!", "abc", "WyJjMSIsIm1hcmtldHMiXQ"])
def test_bad_cursor_is_a_400_problem(client, market, cursor):
    for path in ("/v1/coins", "/v1/markets", "/v1/rankings", "/v1/screener"):
        r = client.get(path, {"cursor": cursor})
        assert r.status_code == 400 and r["Content-Type"] == "application/problem+json", path
        assert r.json()["errors"][0]["parameter"] == "cursor"


def test_cursor_is_bound_to_its_ordering(client, more_coins):
    cursor = client.get("/v1/markets", {"limit": 2}).json()["next_cursor"]
    r = client.get("/v1/markets", {"limit": 2, "order_by": "price", "cursor": cursor})
    assert r.status_code == 400 and "unchanged" in r.json()["detail"]
    assert client.get("/v1/coins", {"cursor": cursor}).status_code == 400  # another list's cursor


def test_search_ranks_exact_matches_then_market_cap(client, more_coins):
    found = [c["id"] for c in client.get("/v1/coins", {"q": "btc"}).json()["data"]]
    assert found[:2] == ["bitcoin", "batcoin"]
    found = [c["id"] for c in client.get("/v1/coins", {"q": "bitcoin"}).json()["data"]]
    assert found == ["bitcoin", "bitcoin-cash"]  # exact id first
    by_symbol = [c["id"] for c in client.get("/v1/coins", {"symbol": "BTC"}).json()["data"]]
    assert by_symbol == ["bitcoin", "batcoin"]


@pytest.mark.parametrize(
    ("path", "query", "parameter", "needle"),
    [
        ("/v1/coins/bitcoin/candles", {"start": "1764046800000"}, "start", "seconds"),
        ("/v1/coins/bitcoin/candles", {"end": "1764046800123"}, "end", "milliseconds"),
        ("/v1/coins/bitcoin/candles", {"start": ""}, "start", "must not be empty"),
        ("/v1/coins/bitcoin/candles", {"limit": ""}, "limit", "must not be empty"),
        ("/v1/coins", {"q": ""}, "q", "must not be empty"),
        ("/v1/markets", {"offset": "100001"}, "offset", "out of range: must be between 0 and 100000"),
        ("/v1/markets", {"offset": "99999999999999999999999"}, "offset", "out of range"),
        ("/v1/coins/bitcoin/candles", {"limit": "6000"}, "limit", "out of range: must be between 1 and 5000"),
        ("/v1/prices", {"ids": "bitcoin,,ethereum"}, "ids", "not a coin id"),
        ("/v1/coins", {"active": "1"}, "active", "true or false"),
        ("/v1/coins/bitcoin/candles", {"start": "1.5"}, "start", "ISO 8601"),
    ],
)
def test_helpful_parameter_errors(client, market, path, query, parameter, needle):
    r = client.get(path, query)
    assert r.status_code == 400 and r["Content-Type"] == "application/problem+json"
    error = r.json()["errors"][0]
    assert error["parameter"] == parameter and needle in error["detail"], error


def test_times_accepted_as_the_schema_says(client, market):
    for value in (
        "1764046800",
        "2026-11-25",
        "2026-11-25T05:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31",
        "2026-11-25t05:00:00z",
    ):
        assert client.get("/v1/coins/bitcoin/candles", {"start": value}).status_code == 200, value
    empty = client.get("/v1/coins/bitcoin/candles", {"start": "2026-01-02", "end": "2026-01-01"})
    assert empty.status_code == 200 and empty.json()["data"] == []
    assert params.time_value({"start": "1999-01-01"}, "start") == params.MIN_TIME


def test_ids_may_be_repeated_and_count_as_sent(client, market):
    body = client.get("/v1/prices?ids=bitcoin&ids=ethereum").json()
    assert set(body["data"]) == {"bitcoin", "ethereum"}
    assert client.get("/v1/prices", {"ids": ",".join(["bitcoin"] * 251)}).status_code == 400  # maxItems 250
