"""Public market data API: data written by the store's write path, read through real API keys."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import numpy as np
import pytest
import talib
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketdata import services
from tests.api.conftest import write_hourly


def get(client, path, **params):
    return client.get(path, params)


def test_candles_newest_first_match_what_was_written(client, market, hour0):
    r = get(client, "/v1/coins/bitcoin/candles", timeframe="1h", limit=10)
    assert r.status_code == 200, r.content
    body = r.json()
    assert [c["time"] for c in body["data"]][:2] == [
        hour0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        (hour0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
    assert body["data"][0]["closed"] is False and body["data"][1]["closed"] is True
    with connection.cursor() as cur:
        cur.execute(
            "SELECT open, high, low, close, volume_24h FROM marketdata_candle "
            "WHERE coin_id=%s AND timeframe='1h' "
            "ORDER BY bucket_start DESC LIMIT 10",
            [market["bitcoin"]],
        )
        stored = cur.fetchall()
    assert [(c["open"], c["high"], c["low"], c["close"], c["volume_24h"]) for c in body["data"]] == stored
    assert body["data"][0]["volume"] is None
    assert body["next_cursor"]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_cursor_paging_covers_the_range_once(client, market, hour0, order):
    start = (hour0 - timedelta(hours=250)).isoformat()
    whole = get(client, "/v1/coins/bitcoin/candles", start=start, limit=5000, order=order).json()["data"]
    assert len(whole) == 251
    seen, cursor = [], None
    while True:
        params = {"start": start, "limit": 37, "order": order}
        if cursor:
            params["cursor"] = cursor
        r = get(client, "/v1/coins/bitcoin/candles", **params)
        assert r.status_code == 200
        seen += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
        assert 'rel="next"' in r["Link"]
    assert seen == whole


def test_csv_streams_the_same_rows(client, market):
    j = get(client, "/v1/coins/bitcoin/candles", limit=50).json()["data"]
    r = get(client, "/v1/coins/bitcoin/candles", limit=50, format="csv")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode())))
    assert len(rows) == 50
    assert [float(x["close"]) for x in rows] == [c["close"] for c in j]
    assert rows[0]["time"] == j[0]["time"] and rows[0]["closed"] == "false"
    r2 = client.get("/v1/coins/bitcoin/candles?limit=50", HTTP_ACCEPT="text/csv")
    assert r2["Content-Type"].startswith("text/csv")


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"timeframe": "2h"}, "timeframe"),
        ({"limit": "5001"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"start": "yesterday"}, "start"),
        ({"start": ""}, "start"),
        ({"start": "1764046800000"}, "start"),
        ({"end": "99999999999"}, "end"),
        ({"order": "up"}, "order"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"limt": "5"}, "limt"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_parameters_are_400_problems_naming_the_parameter(client, market, params, parameter):
    r = client.get("/v1/coins/bitcoin/candles", params)
    assert r.status_code == 400, r.content
    assert r["Content-Type"] == "application/problem+json"
    assert parameter in [e["parameter"] for e in r.json()["errors"]]


def test_unknown_coin_is_404_problem(client, market):
    for path in [
        "/v1/coins/nope",
        "/v1/coins/nope/candles",
        "/v1/coins/nope/indicators/rsi",
        "/v1/coins/%20x",
    ]:
        r = client.get(path)
        assert r.status_code == 404, (path, r.content)
        assert r["Content-Type"] == "application/problem+json"


def test_missing_key_is_401(market):
    from rest_framework.test import APIClient

    r = APIClient().get("/v1/prices", {"ids": "bitcoin"})
    assert r.status_code == 401


def test_etag_304_and_cache_control(client, market, hour0):
    r = get(client, "/v1/coins/bitcoin/candles", limit=5)
    etag = r["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert r["Cache-Control"] == "private, max-age=10"  # includes the open bucket
    r304 = client.get("/v1/coins/bitcoin/candles", {"limit": 5}, HTTP_IF_NONE_MATCH=etag)
    assert r304.status_code == 304 and r304.content == b"" and r304["ETag"] == etag
    closed = get(client, "/v1/coins/bitcoin/candles", end=(hour0 - timedelta(hours=3)).isoformat(), limit=5)
    assert closed["Cache-Control"] == "private, max-age=86400"
    other = client.get("/v1/coins/bitcoin/candles", {"limit": 6}, HTTP_IF_NONE_MATCH=etag)
    assert other.status_code == 200


def test_new_candle_invalidates_cached_answers(client, market, hour0, django_capture_on_commit_callbacks):
    first = get(client, "/v1/coins/bitcoin/candles", limit=3).json()
    rsi_first = get(client, "/v1/coins/bitcoin/indicators/rsi", limit=3).json()
    # Cached: a second call answers from Redis without SQL beyond the gateway.
    with CaptureQueriesContext(connection) as ctx:
        again = get(client, "/v1/coins/bitcoin/candles", limit=3).json()
    assert again == first
    assert not [q for q in ctx.captured_queries if "marketdata_candle" in q["sql"]]
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(
            rows=[services.CandleRow(market["bitcoin"], "1h", hour0 + timedelta(hours=1), 1, 2, 0.5, 1.5)],
            source="test",
        )
    after = get(client, "/v1/coins/bitcoin/candles", limit=3).json()
    assert after["data"][0]["close"] == 1.5 and after != first
    rsi_after = get(client, "/v1/coins/bitcoin/indicators/rsi", limit=3).json()
    assert rsi_after["data"][0]["time"] != rsi_first["data"][0]["time"]


def test_candles_query_count(client, market, django_assert_max_num_queries):
    get(client, "/v1/coins/bitcoin/candles", limit=1)  # warms the key, plan and coin memo
    with CaptureQueriesContext(connection) as ctx:
        r = get(client, "/v1/coins/bitcoin/candles", limit=500, order="asc")
    assert r.status_code == 200
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]


def _series(coin_id):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT bucket_start, high, low, close FROM marketdata_candle "
            "WHERE coin_id=%s AND timeframe='1h' "
            "ORDER BY bucket_start",
            [coin_id],
        )
        rows = cur.fetchall()
    t, h, lo, c = zip(*rows, strict=True)
    return [x.strftime("%Y-%m-%dT%H:%M:%SZ") for x in t], np.array(h), np.array(lo), np.array(c)


REFERENCE = {
    "sma": (lambda h, lo, c: {"value": talib.SMA(c, 20)}, {}),
    "ema": (lambda h, lo, c: {"value": talib.EMA(c, 10)}, {"period": 10}),
    "rsi": (lambda h, lo, c: {"value": talib.RSI(c, 14)}, {}),
    "atr": (lambda h, lo, c: {"value": talib.ATR(h, lo, c, 7)}, {"period": 7}),
    "macd": (
        lambda h, lo, c: dict(zip(("macd", "signal", "histogram"), talib.MACD(c, 12, 26, 9), strict=True)),
        {},
    ),
    "bbands": (
        lambda h, lo, c: dict(
            zip(("upper", "middle", "lower"), talib.BBANDS(c, 20, 2.5, 2.5, 0), strict=True)
        ),
        {"stddev": "2.5"},
    ),
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_indicator_values_match_talib_on_the_stored_series(client, market, name):
    times, h, lo, c = _series(market["bitcoin"])
    ref_fn, extra = REFERENCE[name]
    ref = ref_fn(h, lo, c)
    r = get(client, f"/v1/coins/bitcoin/indicators/{name}", order="asc", limit=5000, **extra)
    assert r.status_code == 200, r.content
    data = r.json()["data"]
    assert [p["time"] for p in data] == times
    for key, values in ref.items():
        for point, expected in zip(data, values, strict=True):
            if np.isnan(expected):
                assert point[key] is None
            else:
                assert point[key] == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_volatility_is_annualised_stdev_of_log_returns(client, market):
    _times, _, _, c = _series(market["bitcoin"])
    data = get(client, "/v1/coins/bitcoin/indicators/volatility", order="asc", limit=5000, period=10).json()[
        "data"
    ]
    r = np.diff(np.log(c))
    for t in (10, 100, len(c) - 1):
        expected = np.std(r[t - 10 : t], ddof=1) * np.sqrt(8760)
        assert data[t]["value"] == pytest.approx(expected, rel=1e-9)
    assert all(p["value"] is None for p in data[:10])


@pytest.mark.parametrize("name", ["ema", "rsi", "macd", "atr", "sma", "bbands", "volatility"])
def test_indicator_paging_gives_the_same_numbers_as_one_request(client, market, hour0, name):
    start = (hour0 - timedelta(hours=120)).isoformat()
    whole = get(client, f"/v1/coins/bitcoin/indicators/{name}", start=start, order="asc", limit=5000).json()
    assert len(whole["data"]) == 121 and all(
        v is not None for p in whole["data"] for k, v in p.items() if k != "time"
    )
    pages, cursor = [], None
    while True:
        params = {"start": start, "order": "asc", "limit": 25}
        if cursor:
            params["cursor"] = cursor
        body = get(client, f"/v1/coins/bitcoin/indicators/{name}", **params).json()
        pages += body["data"]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == whole["data"]
    # A narrow window asked for alone: the same values (history before `start` is used).
    narrow = get(
        client,
        f"/v1/coins/bitcoin/indicators/{name}",
        start=start,
        end=(hour0 - timedelta(hours=110)).isoformat(),
    ).json()["data"]
    assert list(reversed(narrow)) == whole["data"][:10]


def test_indicator_parameter_validation(client, market):
    assert get(client, "/v1/coins/bitcoin/indicators/nope").status_code == 404
    for params, name in [
        ({"period": "1"}, "period"),
        ({"period": "100000"}, "period"),
        ({"fast": "3"}, "fast"),  # not a parameter of rsi
        ({"period": "x"}, "period"),
    ]:
        r = client.get("/v1/coins/bitcoin/indicators/rsi", params)
        assert r.status_code == 400 and name in [e["parameter"] for e in r.json()["errors"]], r.content
    r = client.get("/v1/coins/bitcoin/indicators/bbands", {"stddev": "nan"})
    assert r.status_code == 400


def test_coins_search_and_paging(client, market):
    body = get(client, "/v1/coins", limit=2).json()
    assert [c["id"] for c in body["data"]] == ["bitcoin", "dogecoin"]
    nxt = get(client, "/v1/coins", limit=2, cursor=body["next_cursor"]).json()
    assert [c["id"] for c in nxt["data"]] == ["ethereum"] and nxt["next_cursor"] is None
    assert [c["id"] for c in get(client, "/v1/coins", q="ETH").json()["data"]] == ["ethereum"]
    assert [c["id"] for c in get(client, "/v1/coins", q="doge").json()["data"]] == ["dogecoin"]


def test_coin_detail_has_snapshot_or_null(client, market):
    btc = get(client, "/v1/coins/bitcoin").json()
    assert btc["symbol"] == "btc" and btc["market"]["price"] == 60000.0 and btc["market"]["rank"] == 1
    assert get(client, "/v1/coins/dogecoin").json()["market"] is None


def test_prices_and_markets(client, market):
    body = get(client, "/v1/prices", ids="bitcoin,ethereum,nope").json()
    assert set(body["data"]) == {"bitcoin", "ethereum"} and body["missing"] == ["nope"]
    assert body["data"]["ethereum"]["change_24h_pct"] == -0.5
    detail = get(client, "/v1/coins/bitcoin").json()["market"]  # rendered by orjson in Python
    assert body["data"]["bitcoin"] == {k: detail[k] for k in body["data"]["bitcoin"]}
    assert get(client, "/v1/prices", ids="nope").json() == {"vs": "usd", "data": {}, "missing": ["nope"]}
    assert get(client, "/v1/prices").status_code == 400
    too_many = ",".join(f"c{i}" for i in range(251))
    assert get(client, "/v1/prices", ids=too_many).status_code == 400
    markets = get(client, "/v1/markets").json()["data"]
    assert [m["id"] for m in markets] == ["bitcoin", "ethereum"]
    by_change = get(client, "/v1/markets", order_by="change", direction="asc").json()["data"]
    assert [m["id"] for m in by_change] == ["ethereum", "bitcoin"]


def test_prices_query_count_and_cache(client, market):
    get(client, "/v1/prices", ids="ethereum")  # warm key + plan
    with CaptureQueriesContext(connection) as ctx:
        assert get(client, "/v1/prices", ids="bitcoin,ethereum").status_code == 200
    assert len(ctx.captured_queries) == 1
    with CaptureQueriesContext(connection) as ctx:
        assert get(client, "/v1/prices", ids="ethereum,bitcoin").status_code == 200
    assert len(ctx.captured_queries) == 0  # same set of ids: served from the response cache


def test_rankings_now_and_at_a_past_time(client, market, hour0):
    now = get(client, "/v1/rankings").json()
    assert [r["id"] for r in now["data"]] == ["bitcoin", "ethereum"]
    total = 1.2e12 + 3.6e11
    assert now["data"][0]["share_pct"] == pytest.approx(1.2e12 / total * 100)
    at = hour0 - timedelta(hours=2)
    past = get(client, "/v1/rankings", at=at.isoformat()).json()
    # Market caps at the close of the last full hour before `at` (from the 1h candles written above).
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.upstream_id, k.market_cap FROM marketdata_candle k "
            "JOIN marketdata_coin c ON c.id=k.coin_id "
            "WHERE k.timeframe='1h' AND k.bucket_start=%s ORDER BY k.market_cap DESC",
            [at - timedelta(hours=1)],
        )
        expected = cur.fetchall()
    assert [(r["id"], r["market_cap"]) for r in past["data"]] == expected
    assert past["data"][0]["rank_change_24h"] == 0
    future = get(client, "/v1/rankings", at="2999-01-01T00:00:00Z").json()  # a future time means now
    assert future["at"] is None and [r["id"] for r in future["data"]] == ["bitcoin", "ethereum"]


def test_screener_filters_latest_indicators(client, market, hour0, django_capture_on_commit_callbacks):
    from marketdata import screener

    with django_capture_on_commit_callbacks(execute=True):
        write_hourly(market["dogecoin"], 20, hour0, seed=5, start=0.1)
    result = screener.latest_indicators_refresh(timeframe="1h")
    assert result.coins == 3
    times, _h, _lo, c = _series(market["bitcoin"])
    closed = c[:-1]  # the newest bucket is open: the screener uses the newest closed candle
    rsi = talib.RSI(closed, 14)[-1]
    body = get(client, "/v1/screener", timeframe="1h").json()
    btc = next(r for r in body["data"] if r["id"] == "bitcoin")
    assert btc["rsi"] == pytest.approx(rsi, rel=1e-9)
    assert btc["macd"] == pytest.approx(talib.MACD(closed, 12, 26, 9)[0][-1], rel=1e-9)
    assert btc["time"] == times[-2]
    doge = next(r for r in body["data"] if r["id"] == "dogecoin")
    assert doge["macd"] is None and doge["sma"] is None  # 19 closed candles: warm-up, null
    assert doge["rsi"] is not None
    below = get(client, "/v1/screener", timeframe="1h", rsi_lt=str(rsi + 1e-6)).json()["data"]
    above = get(client, "/v1/screener", timeframe="1h", rsi_gt=str(rsi + 1e-6)).json()["data"]
    assert "bitcoin" in [r["id"] for r in below] and "bitcoin" not in [r["id"] for r in above]
    assert get(client, "/v1/screener", rsi_lt="abc").status_code == 400
    # A refresh after a candle changed changes the answer (the screener's cache version is bumped).
    with django_capture_on_commit_callbacks(execute=True):
        last = hour0 - timedelta(hours=1)
        services.candles_upsert(
            rows=[services.CandleRow(market["bitcoin"], "1h", last, 1.0, 1.0, 1.0, 1.0, closed=True)],
            source="test",
        )
    cached = get(client, "/v1/screener", timeframe="1h").json()
    assert (
        next(r for r in cached["data"] if r["id"] == "bitcoin")["close"] == btc["close"]
    )  # not refreshed yet
    screener.latest_indicators_refresh(timeframe="1h")
    again = get(client, "/v1/screener", timeframe="1h").json()
    assert next(r for r in again["data"] if r["id"] == "bitcoin")["close"] == 1.0


def test_csv_has_its_own_strong_etag_and_errors_stay_problem_json(client, market):
    r = client.get("/v1/coins/bitcoin/candles", {"limit": 5}, HTTP_ACCEPT="text/csv")
    etag = r["ETag"]
    json_etag = get(client, "/v1/coins/bitcoin/candles", limit=5)["ETag"]
    assert etag != json_etag and not etag.startswith("W/")
    again = client.get(
        "/v1/coins/bitcoin/candles", {"limit": 5}, HTTP_ACCEPT="text/csv", HTTP_IF_NONE_MATCH=etag
    )
    assert again.status_code == 304
    bad = client.get("/v1/coins/bitcoin/candles", {"limit": "x"}, HTTP_ACCEPT="text/csv")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"
    assert bad.json()["errors"][0]["parameter"] == "limit"


def test_indicator_query_count(client, market):
    get(client, "/v1/coins/bitcoin/indicators/ema", limit=1)  # warms key, plan and the coin memo
    with CaptureQueriesContext(connection) as ctx:
        assert get(client, "/v1/coins/bitcoin/indicators/ema", limit=50, period=9).status_code == 200
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]


def test_timeframes_outside_the_plan_are_403_with_upgrade_link(market):
    from django.apps import apps
    from rest_framework.test import APIClient

    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from tests.api.conftest import SEED

    SEED.seed(apps, None)
    org = organization_create(name="Free Org")
    _row, key = api_key_create(organization=org, name="k", audit=False)
    free = APIClient()
    free.credentials(HTTP_X_API_KEY=key)
    r = free.get("/v1/coins/bitcoin/candles", {"timeframe": "1m"})
    assert r.status_code == 403 and r.json()["type"].endswith("/plan-upgrade-required")
    assert "upgrade_url" in r.json()
    assert free.get("/v1/coins/bitcoin/candles", {"timeframe": "1h"}).status_code == 200


@pytest.mark.parametrize(
    "value", ["2026-11-01", "2026-11-01T00:00:00Z", "2026-11-01T01:00:00+01:00", "1793491200"]
)
def test_time_parameters_accept_iso_dates_datetimes_and_unix_seconds(client, market, value):
    from marketdata.api import params

    assert params.time_value({"start": value}, "start").isoformat() == "2026-11-01T00:00:00+00:00"
    assert get(client, "/v1/coins/bitcoin/candles", start=value).status_code == 200
