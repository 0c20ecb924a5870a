"""Coverage (GET /v1/coins/{id}/coverage, coin detail), samples/partial in candle rows (JSON and CSV),
4h/1w candles through the API, and rankings at a time without data (404 no-data-at)."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketdata import selectors, services
from marketdata.services import CandleRow


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gappy_series(
    coin_id: int, hour0: datetime, n: int, missing: set[int], filled: set[int]
) -> list[datetime]:
    """n hourly candles ending at hour0 (the open current hour) minus the ``missing`` offsets;
    ``filled`` offsets are written as filled candles. Returns the bucket starts written."""
    first = hour0 - timedelta(hours=n - 1)
    rows, times = [], []
    for i in range(n):
        if i in missing:
            continue
        t = first + timedelta(hours=i)
        rows.append(CandleRow(coin_id, "1h", t, 1.0, 1.0, 1.0, 1.0, market_cap=1e9, filled=i in filled))
        times.append(t)
    services.candles_upsert(rows=rows, source="test")
    return times


def _independent_gaps(times: list[datetime], step: timedelta) -> list[tuple[datetime, datetime]]:
    gaps = []
    for a, b in itertools.pairwise(times):
        if b - a > step:
            gaps.append((a + step, b))
    return sorted(gaps, reverse=True)


def test_coverage_lists_first_last_count_and_gaps_per_timeframe(client, market, hour0):
    coin = services.coins_upsert(coins=[services.CoinIn("gappy", "gap", "Gappy")])["gappy"]
    missing = {3, 4, 5, 40, 77, 78}
    times = _gappy_series(coin, hour0, 100, missing, filled={10, 11, 12})
    r = client.get("/v1/coins/gappy/coverage")
    assert r.status_code == 200 and r["ETag"]
    body = r.json()
    assert body["coin"] == "gappy"
    by_tf = {c["timeframe"]: c for c in body["timeframes"]}
    assert list(by_tf) == ["1m", "5m", "15m", "1h", "4h", "1d", "1w"]
    h = by_tf["1h"]
    assert (h["first"], h["last"], h["count"]) == (_iso(times[0]), _iso(times[-1]), 100 - len(missing))
    expected = _independent_gaps(times, timedelta(hours=1))
    assert [(g["start"], g["end"]) for g in h["gaps"]] == [(_iso(a), _iso(b)) for a, b in expected]
    assert [g["buckets"] for g in h["gaps"]] == [2, 1, 3]
    assert h["gaps_total"] == 3 and h["missing_buckets"] == len(missing)
    assert h["gaps_checked_from"] == h["first"] and h["first_partial"] is False
    # filled hours are stored (carried forward on purpose): no gap
    assert all(not (g["start"] <= _iso(times[0] + timedelta(hours=10)) < g["end"]) for g in h["gaps"])
    empty = by_tf["1m"]
    assert empty == {
        "timeframe": "1m",
        "first": None,
        "last": None,
        "count": 0,
        "first_partial": None,
        "missing_buckets": 0,
        "gaps_total": 0,
        "gaps": [],
        "gaps_checked_from": None,
    }
    # the coin detail carries the same coverage
    detail = client.get("/v1/coins/gappy").json()
    assert detail["coverage"] == body["timeframes"]


def test_coverage_of_a_long_series_is_bounded_and_its_count_exact(db, hour0):
    coin = services.coins_upsert(coins=[services.CoinIn("long", "lng", "Long")])["long"]
    times = _gappy_series(coin, hour0, 300, {5, 6, 250, 290}, filled=set())
    full = {c.timeframe: c for c in selectors.coverage(coin_id=coin, timeframes=["1h"])}["1h"]
    bounded = {c.timeframe: c for c in selectors.coverage(coin_id=coin, timeframes=["1h"], scan=60)}["1h"]
    assert full.count == bounded.count == len(times)
    assert full.gaps_checked_from == times[0] and full.gaps_total == 3 and full.missing_buckets == 4
    # only the newest 60 candles were searched: the gaps at 250 and 290 are found, not the old one
    assert bounded.gaps_checked_from == times[-60]
    assert bounded.gaps_total == 2 and bounded.missing_buckets == 2
    assert (bounded.first, bounded.last) == (times[0], times[-1])


def test_coverage_is_cached_until_a_series_of_the_coin_changes(
    client, market, hour0, django_capture_on_commit_callbacks
):
    client.get("/v1/coins/bitcoin/coverage")  # warms the key, plan, coin memo and the cached coverage
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/v1/coins/bitcoin/coverage")
    assert r.status_code == 200
    assert len(ctx.captured_queries) == 0, [q["sql"] for q in ctx.captured_queries]
    h = {c["timeframe"]: c for c in r.json()["timeframes"]}["1h"]
    assert h["count"] == 300 and h["gaps"] == []
    # a daily candle far back: the 1d series' version moves, the coverage is computed again (1 query)
    coin = services.coins_upsert(coins=[services.CoinIn("bitcoin", "btc", "Bitcoin")])["bitcoin"]
    old = (hour0 - timedelta(days=400)).replace(hour=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(rows=[CandleRow(coin, "1d", old, 1.0, 1.0, 1.0, 1.0)], source="ohlc")
    with CaptureQueriesContext(connection) as ctx:
        r = client.get("/v1/coins/bitcoin/coverage")
    assert len(ctx.captured_queries) == 1, [q["sql"] for q in ctx.captured_queries]
    d = {c["timeframe"]: c for c in r.json()["timeframes"]}["1d"]
    assert d["first"] == _iso(old) and d["count"] == 1
    # the coin detail serves the same (cached) coverage
    assert client.get("/v1/coins/bitcoin").json()["coverage"] == r.json()["timeframes"]
    assert client.get("/v1/coins/nope/coverage").status_code == 404


def test_candle_rows_carry_samples_and_partial_in_json_and_csv(client, db, hour0):
    coin = services.coins_upsert(coins=[services.CoinIn("fresh", "frs", "Fresh")])["fresh"]
    b = hour0 - timedelta(hours=3)
    services.candles_upsert(
        rows=[
            CandleRow(coin, "1h", b, 1.0, 2.0, 0.5, 1.5, samples=40, partial=True),
            CandleRow(coin, "1h", b + timedelta(hours=1), 1.5, 2.0, 1.0, 1.8, samples=180),
            CandleRow(coin, "1h", b + timedelta(hours=2), 1.8, 1.9, 1.7, 1.7),  # upstream OHLC: no samples
        ],
        source="test",
    )
    data = client.get("/v1/coins/fresh/candles", {"order": "asc"}).json()["data"]
    assert [(d["samples"], d["partial"]) for d in data] == [(40, True), (180, False), (None, False)]
    r = client.get("/v1/coins/fresh/candles.csv", {"order": "asc"})
    text = b"".join(r.streaming_content).decode()
    assert text.splitlines()[0] == ",".join(selectors.CANDLE_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(x["samples"], x["partial"]) for x in rows] == [("40", "true"), ("180", "false"), ("", "false")]


def test_4h_and_1w_candles_are_served(client, db):
    coin = services.coins_upsert(coins=[services.CoinIn("weekly", "wk", "Weekly")])["weekly"]
    start = datetime(2026, 10, 1, tzinfo=UTC)  # a Thursday
    rows = [
        CandleRow(coin, "1h", start + timedelta(hours=i), 1.0 + i, 1.0 + i, 1.0 + i, 1.0 + i)
        for i in range(24 * 14)
    ]
    services.candles_rollup_result(services.candles_upsert(rows=rows, source="test"))
    weeks = client.get("/v1/coins/weekly/candles", {"timeframe": "1w", "order": "asc"}).json()["data"]
    assert [w["time"] for w in weeks] == [
        "2026-09-28T00:00:00Z",
        "2026-10-05T00:00:00Z",
        "2026-10-12T00:00:00Z",
    ]
    assert weeks[0]["partial"] is True and weeks[1]["partial"] is False
    assert weeks[1]["open"] == 1.0 + 4 * 24 and weeks[1]["close"] == 1.0 + 11 * 24 - 1
    fours = client.get("/v1/coins/weekly/candles", {"timeframe": "4h", "limit": 1, "order": "asc"}).json()
    assert fours["data"][0]["time"] == "2026-10-01T00:00:00Z" and fours["data"][0]["close"] == 4.0
    bad = client.get("/v1/coins/weekly/candles", {"timeframe": "2w"})
    assert bad.status_code == 400 and "1w" in bad.json()["detail"]


def test_rankings_before_any_data_are_a_no_data_at_problem(client, market, hour0):
    r = client.get("/v1/rankings", {"at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 404
    assert r["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/problems/no-data-at")
    first_hour = hour0 - timedelta(hours=299)  # bitcoin's first 1h candle (the market fixture)
    assert body["earliest"] == _iso(first_hour + timedelta(hours=1))
    assert body["at"] == "2020-01-01T00:00:00Z"
    assert body["earliest"] in body["detail"]
    # at the earliest time there is a ranking
    ok = client.get("/v1/rankings", {"at": body["earliest"]})
    assert ok.status_code == 200 and [x["id"] for x in ok.json()["data"]] == ["bitcoin"]
    assert "no-data-at" in {p["slug"] for p in client.get("/problems/").json()["problems"]}


@pytest.mark.django_db
def test_rankings_with_no_market_caps_at_all_say_so(client):
    r = client.get("/v1/rankings", {"at": "2026-01-01T00:00:00Z"})
    assert r.status_code == 404 and r.json()["earliest"] is None
    assert "omit `at`" in r.json()["detail"]
