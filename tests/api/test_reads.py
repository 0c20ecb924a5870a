"""Issue 16, reads over the stored candles: several coins in one call (`GET /v1/candles`, `.csv`),
a coin's values at a day's close (`/v1/coins/{id}/history`) and its market chart
(`/v1/coins/{id}/market_chart`). Data written by the store's write path, read through real keys."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketdata import selectors, services
from marketdata.api import params
from marketdata.api.views import _ids_digest, auto_interval
from tests.gateway.conftest import parse_ratelimit

ISO = "%Y-%m-%dT%H:%M:%SZ"


def _iso(t: datetime) -> str:
    return t.strftime(ISO)


def _month_left(response) -> int:
    return parse_ratelimit(response["RateLimit"])["month"]["r"]


def _walk(client, path: str, query: dict) -> list[dict]:
    rows, cursor = [], None
    while True:
        r = client.get(path, {**query, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.content
        rows += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            assert "Link" not in r
            return rows
        assert 'rel="next"' in r["Link"]


# --- GET /v1/candles ---------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_multi_coin_rows_are_the_single_coin_rows_with_the_coin_id(client, market, hour0, order):
    start = _iso(hour0 - timedelta(hours=60))
    query = {"timeframe": "1h", "start": start, "order": order, "limit": 5000}
    r = client.get("/v1/candles", {**query, "ids": "ethereum,bitcoin,dogecoin"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["timeframe"] == "1h" and body["ids"] == ["ethereum", "bitcoin", "dogecoin"]
    expected = []
    for coin in ("ethereum", "bitcoin", "dogecoin"):  # coin by coin, in the order of ids
        single = client.get(f"/v1/coins/{coin}/candles", query).json()["data"]
        expected += [{"coin": coin, **row} for row in single]
    assert body["data"] == expected
    assert len(expected) == 40 + 61  # ethereum's 40, bitcoin's 61 in range, dogecoin none
    assert next(iter(body["data"][0])) == "coin"  # the coin id first, then the single-coin row's keys
    assert body["next_cursor"] is None


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_multi_coin_cursor_paging_covers_every_row_once(client, market, hour0, order):
    query = {"ids": "bitcoin,dogecoin,ethereum", "start": _iso(hour0 - timedelta(hours=30)), "order": order}
    whole = client.get("/v1/candles", {**query, "limit": 5000}).json()["data"]
    assert len(whole) == 31 + 31
    paged = _walk(client, "/v1/candles", {**query, "limit": 7})
    assert paged == whole
    # a page boundary exactly at the end of a coin's rows
    assert _walk(client, "/v1/candles", {**query, "limit": 31}) == whole


def test_multi_coin_cursor_is_bound_to_its_ids_and_order(client, market):
    r = client.get("/v1/candles", {"ids": "bitcoin,ethereum", "limit": 3})
    cursor = r.json()["next_cursor"]
    assert cursor
    context = ["desc", _ids_digest(["bitcoin", "ethereum"])]  # forged cursors with the right context

    def forged(key: list) -> str:
        return params.encode_key_cursor("candles", context, key)

    for query in (
        {"ids": "ethereum,bitcoin", "cursor": cursor},
        {"ids": "bitcoin,ethereum", "order": "asc", "cursor": cursor},
        {"ids": "bitcoin,ethereum", "cursor": "garbage!"},
        {
            "ids": "bitcoin,ethereum",
            "cursor": forged(["bitcoin", 2**62]),
        },
        {"ids": "bitcoin,ethereum", "cursor": forged(["ethereum", -1])},
        {"ids": "bitcoin,ethereum", "cursor": forged(["dogecoin", 0])},
    ):
        bad = client.get("/v1/candles", query)
        assert bad.status_code == 400, bad.content
        assert [e["parameter"] for e in bad.json()["errors"]] == ["cursor"]


def test_multi_coin_limits_and_unknown_ids(client, market):
    too_many = ",".join(f"coin-{i}" for i in range(params.MAX_CANDLE_IDS + 1))
    r = client.get("/v1/candles", {"ids": too_many})
    assert r.status_code == 400 and r["Content-Type"] == "application/problem+json"
    assert r.json()["errors"] == [{"parameter": "ids", "detail": "at most 50 ids per call"}]
    assert client.get("/v1/candles").json()["errors"][0]["parameter"] == "ids"  # required
    fifty = ",".join(["bitcoin", *(f"coin-{i}" for i in range(49))])
    r = client.get("/v1/candles", {"ids": fifty})
    assert r.status_code == 404  # 50 is allowed: refused for its unknown ids, not its length
    r = client.get("/v1/candles", {"ids": "bitcoin,nope,ethereum,Nada"})
    assert r.status_code == 404 and r["Content-Type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("/problems/not-found")
    assert problem["missing"] == ["nope", "nada"]  # ids are lower-cased like everywhere
    assert "'nope'" in problem["detail"] and "'nada'" in problem["detail"]


def test_multi_coin_credits_are_by_rows_returned(client, market, hour0, django_capture_on_commit_callbacks):
    first = hour0 - timedelta(minutes=1199)
    rows = [
        services.CandleRow(market["dogecoin"], "1m", first + timedelta(minutes=i), 1, 1, 1, 1)
        for i in range(1200)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(rows=rows, source="test")
    base = client.get("/v1/ping")
    before = _month_left(base)
    r = client.get("/v1/candles", {"ids": "bitcoin,dogecoin", "timeframe": "1m", "limit": 5000})
    assert len(r.json()["data"]) == 1200
    assert before - _month_left(r) == 2  # 1,200 rows: 2 credits
    small = client.get("/v1/candles", {"ids": "bitcoin,dogecoin", "timeframe": "1m", "limit": 5000})
    assert _month_left(r) - _month_left(small) == 2  # answered from the cache: the same price
    few = client.get("/v1/candles", {"ids": "dogecoin", "timeframe": "1m", "limit": 10})
    assert _month_left(small) - _month_left(few) == 1
    unknown = client.get("/v1/candles", {"ids": "nope", "limit": 5000})
    assert unknown.status_code == 404 and _month_left(unknown) == _month_left(few)  # errors cost 0


def test_multi_coin_csv_streams_the_same_rows(client, market):
    query = {"ids": "ethereum,bitcoin", "limit": 60}
    j = client.get("/v1/candles", query).json()
    r = client.get("/v1/candles.csv", query)
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    text = b"".join(r.streaming_content).decode()
    assert text.splitlines()[0] == "coin," + ",".join(selectors.CANDLE_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(x["coin"], x["time"], float(x["close"])) for x in rows] == [
        (c["coin"], c["time"], c["close"]) for c in j["data"]
    ]
    assert rows[0]["coin"] == "ethereum" and rows[-1]["coin"] == "bitcoin"
    assert 'rel="next"' in r["Link"] and r["ETag"].endswith('-csv"')
    assert 'filename="candles-1h.csv"' in r["Content-Disposition"]
    bad = client.get("/v1/candles.csv", {"ids": "nope"})
    assert bad.status_code == 404 and bad["Content-Type"] == "application/problem+json"


def test_multi_coin_page_is_one_query_and_a_cached_answer_none(client, market):
    client.get("/v1/candles", {"ids": "bitcoin,ethereum,dogecoin", "limit": 1})  # warms key, plan, memo
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/v1/candles", {"ids": "bitcoin,ethereum,dogecoin", "limit": 500, "order": "asc"})
    assert r.status_code == 200 and len(r.json()["data"]) == 340
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]
    with CaptureQueriesContext(connection) as ctx:
        again = client.get("/v1/candles", {"ids": "bitcoin,ethereum,dogecoin", "limit": 500, "order": "asc"})
    assert again.content == r.content and len(ctx.captured_queries) == 0
    selectors.coin_memo_clear()  # a fresh process: one more query to learn the coin ids
    with CaptureQueriesContext(connection) as ctx:
        client.get("/v1/candles", {"ids": "bitcoin,ethereum", "limit": 400})
    assert len(ctx.captured_queries) == 2


def test_a_new_candle_of_any_coin_invalidates_the_multi_coin_answer(
    client, market, hour0, django_capture_on_commit_callbacks
):
    query = {"ids": "bitcoin,ethereum", "limit": 5000}
    first = client.get("/v1/candles", query)
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(
            rows=[services.CandleRow(market["ethereum"], "1h", hour0 + timedelta(hours=1), 1, 2, 0.5, 1.5)],
            source="test",
        )
    after = client.get("/v1/candles", query).json()["data"]
    assert len(after) == len(first.json()["data"]) + 1
    assert after[300] == {**after[300], "coin": "ethereum", "close": 1.5}
    r304 = client.get("/v1/candles", query, HTTP_IF_NONE_MATCH=first["ETag"])
    assert r304.status_code == 200  # the old ETag no longer matches


def test_multi_coin_closed_range_is_cached_long(client, market, hour0):
    closed = client.get("/v1/candles", {"ids": "bitcoin,ethereum", "end": _iso(hour0 - timedelta(hours=2))})
    assert closed["Cache-Control"] == "private, max-age=86400"
    r304 = client.get(
        "/v1/candles",
        {"ids": "bitcoin,ethereum", "end": _iso(hour0 - timedelta(hours=2))},
        HTTP_IF_NONE_MATCH=closed["ETag"],
    )
    assert r304.status_code == 304
    assert client.get("/v1/candles", {"ids": "bitcoin"})["Cache-Control"] == "private, max-age=10"


# --- GET /v1/coins/{id}/history ----------------------------------------------------------------------
@pytest.fixture
def days(market, hour0, django_capture_on_commit_callbacks):
    """bitcoin's 1d candles of the days 2 … 6 days ago (closed; the day before yesterday's last)."""
    today = hour0.replace(hour=0)
    rows = [
        services.CandleRow(
            market["bitcoin"], "1d", today - timedelta(days=d), 100.0 + d, 120.0, 90.0, 110.0 + d,
            None, 5e9 + d, 2e12 + d,
        )
        for d in range(2, 7)
    ]  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(rows=rows, source="test")
    return today


def _stored(coin_id: int, timeframe: str, bucket: datetime) -> tuple:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT close, market_cap, volume_24h, closed, updated_at FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = %s AND bucket_start = %s",
            [coin_id, timeframe, bucket],
        )
        return cur.fetchone()


def test_history_of_a_day_with_a_daily_candle_is_its_close(client, market, days):
    day = days - timedelta(days=3)
    r = client.get("/v1/coins/bitcoin/history", {"date": day.date().isoformat()})
    assert r.status_code == 200, r.content
    assert r.json() == {
        "id": "bitcoin",
        "symbol": "btc",
        "name": "Bitcoin",
        "date": day.date().isoformat(),
        "price": 113.0,
        "market_cap": 2e12 + 3,
        "volume_24h": 5e9 + 3,
        "as_of": _iso(day + timedelta(days=1)),
        "timeframe": "1d",
        "closed": True,
    }
    assert r["Cache-Control"] == "private, max-age=86400"


def test_history_without_a_daily_candle_is_the_days_last_candle(client, market, days):
    yesterday = days - timedelta(days=1)  # hourly candles only
    r = client.get("/v1/coins/bitcoin/history", {"date": yesterday.date().isoformat()})
    body = r.json()
    last_hour = yesterday + timedelta(hours=23)
    close, cap, volume, _closed, _ = _stored(market["bitcoin"], "1h", last_hour)
    assert (body["price"], body["market_cap"], body["volume_24h"]) == (close, cap, volume)
    assert body["timeframe"] == "1h" and body["closed"] is True
    assert body["as_of"] == _iso(days)


def test_history_of_today_is_the_latest_so_far(client, market, hour0, days):
    r = client.get("/v1/coins/bitcoin/history", {"date": days.date().isoformat()})
    body = r.json()
    close, cap, _volume, closed, updated_at = _stored(market["bitcoin"], "1h", hour0)
    assert closed is False and body["closed"] is False
    assert (body["price"], body["market_cap"], body["timeframe"]) == (close, cap, "1h")
    as_of = datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
    assert as_of == min(updated_at, hour0 + timedelta(hours=1))
    assert r["Cache-Control"] == "private, max-age=10"


def test_history_without_data_names_the_dates_that_have_data(client, market, hour0, days):
    first = (hour0 - timedelta(hours=299)).date()
    cases = {
        (first - timedelta(days=1)).isoformat(): "data starts on",
        "2001-01-01": "data starts on",
        (days + timedelta(days=1)).date().isoformat(): "in the future",
        "9999-12-31": "in the future",
    }
    for date, needle in cases.items():
        r = client.get("/v1/coins/bitcoin/history", {"date": date})
        assert r.status_code == 404, (date, r.content)
        assert r["Content-Type"] == "application/problem+json"
        problem = r.json()
        assert problem["type"].endswith("/problems/no-data")
        assert problem["earliest_date"] == first.isoformat()
        assert problem["latest_date"] == days.date().isoformat()
        assert needle in problem["detail"] and first.isoformat() in problem["detail"]
    r = client.get("/v1/coins/dogecoin/history", {"date": days.date().isoformat()})
    assert r.status_code == 404
    assert r.json()["earliest_date"] is None and "yet" in r.json()["detail"]
    assert client.get("/v1/coins/nope/history", {"date": "2026-01-01"}).json()["type"].endswith("/not-found")


@pytest.mark.parametrize("value", ["2026-13-01", "2026-02-30", "yesterday", "2026-1-1", "", "20260101"])
def test_history_date_must_be_a_calendar_date(client, market, value):
    r = client.get("/v1/coins/bitcoin/history", {"date": value})
    assert r.status_code == 400
    assert [e["parameter"] for e in r.json()["errors"]] == ["date"]
    assert client.get("/v1/coins/bitcoin/history").json()["errors"][0]["parameter"] == "date"


def test_history_is_one_query(client, market, days):
    date = (days - timedelta(days=4)).date().isoformat()
    client.get("/v1/coins/bitcoin/history", {"date": "2001-01-01"})  # warms key, plan and coin memo
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/v1/coins/bitcoin/history", {"date": date})
    assert r.status_code == 200 and len(ctx.captured_queries) == 1


# --- GET /v1/coins/{id}/market_chart -----------------------------------------------------------------
def test_market_chart_points_are_the_candles_close_market_cap_and_volume(client, market, hour0):
    start = hour0 - timedelta(hours=48)
    r = client.get("/v1/coins/bitcoin/market_chart", {"start": _iso(start)})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["coin"], body["interval"], body["end"]) == ("bitcoin", "1h", None)
    assert body["start"] == _iso(start)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT bucket_start, close, market_cap, volume_24h, closed, updated_at FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = '1h' AND bucket_start >= %s ORDER BY bucket_start",
            [market["bitcoin"], start - timedelta(hours=1)],
        )
        stored = cur.fetchall()
    expected = [
        {
            "time": _iso(b + timedelta(hours=1)) if closed else updated_at.isoformat().replace("+00:00", "Z"),
            "price": close,
            "market_cap": cap,
            "volume_24h": volume,
        }
        for b, close, cap, volume, closed, updated_at in stored
    ]
    assert body["data"] == expected  # the candle ending at start is in (both ends inclusive)
    assert body["data"][0]["time"] == _iso(start)


def test_market_chart_range_is_inclusive_and_interval_explicit(client, market, hour0):
    start, end = hour0 - timedelta(hours=10), hour0 - timedelta(hours=5)
    body = client.get(
        "/v1/coins/bitcoin/market_chart", {"start": _iso(start), "end": _iso(end), "interval": "1h"}
    ).json()
    assert [p["time"] for p in body["data"]] == [_iso(start + timedelta(hours=i)) for i in range(6)]
    none = client.get("/v1/coins/bitcoin/market_chart", {"start": _iso(start), "interval": "15m"}).json()
    assert none["interval"] == "15m" and none["data"] == []


def test_market_chart_auto_interval_follows_the_range_length_and_retention(settings):
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert auto_interval(now - timedelta(hours=24), None, now) == "5m"
    assert auto_interval(now - timedelta(days=3), None, now) == "1h"
    assert auto_interval(now - timedelta(days=90), None, now) == "1h"
    assert auto_interval(now - timedelta(days=91), None, now) == "1d"
    old = now - timedelta(days=400)  # a day long ago: the 5m candles are past their retention
    assert auto_interval(old, old + timedelta(hours=12), now) == "1h"
    settings.CANDLE_RETENTION_DAYS = "1m=30,5m=365,15m=730,1h=30,1d=0"
    assert auto_interval(old, old + timedelta(days=5), now) == "1d"


def test_market_chart_default_range_is_the_last_day(client, market, hour0):
    body = client.get("/v1/coins/bitcoin/market_chart").json()
    assert body["interval"] == "5m" and body["end"] is None
    start = datetime.fromisoformat(body["start"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=58) < datetime.now(UTC) - start < timedelta(hours=24, minutes=2)


def test_market_chart_bad_input_and_bounded_points(client, market, hour0, monkeypatch):
    for query, parameter in (
        ({"interval": "2h"}, "interval"),
        ({"interval": "daily"}, "interval"),
        ({"start": "soon"}, "start"),
        ({"days": "1"}, "days"),
    ):
        r = client.get("/v1/coins/bitcoin/market_chart", query)
        assert r.status_code == 400 and [e["parameter"] for e in r.json()["errors"]] == [parameter]
    monkeypatch.setattr(params, "MAX_CHART_POINTS", 20)
    r = client.get(
        "/v1/coins/bitcoin/market_chart", {"start": _iso(hour0 - timedelta(hours=30)), "interval": "1h"}
    )
    assert r.status_code == 400
    assert "more than 20 points at 1h" in r.json()["errors"][0]["detail"]
    assert client.get("/v1/coins/nope/market_chart").status_code == 404


def test_market_chart_is_one_query(client, market, hour0):
    client.get("/v1/coins/bitcoin/market_chart")  # warms key, plan and coin memo
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/v1/coins/bitcoin/market_chart", {"start": _iso(hour0 - timedelta(days=5))})
    assert r.status_code == 200 and len(r.json()["data"]) == 5 * 24 + 2  # both ends, and the open hour
    assert len(ctx.captured_queries) == 1
