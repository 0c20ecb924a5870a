"""An indicator request reads only the page and the warm-up its first value needs, not the coin's
whole stored series, and answers exactly the values computed over the whole series."""

from __future__ import annotations

import contextlib
import math
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection

from marketdata import indicators, services
from tests.api.conftest import write_hourly

TOLERANCE = 1e-11  # of the output's scale; the recursive ones hold 4 ulps (tests/indicators/test_windowed.py)
N = 4000  # stored 1h candles: several times the longest default warm-up (761, macd)


@pytest.fixture
def long_series(db, django_capture_on_commit_callbacks, hour0):
    with django_capture_on_commit_callbacks(execute=True):
        ids = services.coins_upsert(coins=[services.CoinIn("bitcoin", "btc", "Bitcoin")])
        write_hourly(ids["bitcoin"], N, hour0, seed=5, start=60000.0)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT bucket_start, high, low, close FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = '1h' ORDER BY bucket_start",
            [ids["bitcoin"]],
        )
        rows = cur.fetchall()
    t, h, lo, c = zip(*rows, strict=True)
    times = [x.strftime("%Y-%m-%dT%H:%M:%SZ") for x in t]
    return times, {"high": np.array(h), "low": np.array(lo), "close": np.array(c)}


@contextlib.contextmanager
def candle_rows_read():
    """Counts the candle rows the queries inside the block return."""
    read = [0]

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "marketdata_candle" in sql and sql.lstrip().upper().startswith(("SELECT", "WITH")):
            read[0] += max(context["cursor"].rowcount, 0)
        return result

    with connection.execute_wrapper(wrapper):
        yield read


def _expected(name, params, series, times):
    out = indicators.compute(name, params=params, timeframe="1h", series=series)
    keys = indicators.INDICATORS[name].outputs
    return {
        times[i]: {k: (None if math.isnan(out[k][i]) else float(out[k][i])) for k in keys}
        for i in range(len(times))
    }


def _values(point):
    return {k: v for k, v in point.items() if k != "time"}


def assert_same(points, expected):
    """Each point's values equal the whole-series ones to double precision, nulls where they are
    null: within 4 units in the last place of the output's scale for the recursive indicators
    (tests/indicators/test_windowed.py), and within 1e-11 of it for the windowed ones, whose
    whole-series values carry the rounding of TA-Lib's running sums over 4,000 candles (a page
    computes each value from its own window: indicators.compute_at)."""
    scale = {
        k: max((abs(v[k]) for v in expected.values() if v[k] is not None), default=0.0)
        for k in next(iter(expected.values()))
    }
    for point in points:
        want = expected[point["time"]]
        for key, value in _values(point).items():
            if want[key] is None:
                assert value is None, (point["time"], key)
            else:
                assert abs(value - want[key]) <= TOLERANCE * scale[key], (point["time"], key)


@pytest.mark.parametrize("name", list(indicators.HOUSE))  # the catalogue: test_indicator_catalogue.py
def test_indicator_pages_read_a_window_and_equal_the_whole_series_values(client, long_series, hour0, name):
    times, series = long_series
    params = {
        p.name: (int(p.default) if p.integer else p.default) for p in indicators.INDICATORS[name].params
    }
    expected = _expected(name, params, series, times)
    warm = indicators.warmup(name, params)
    path = f"/v1/coins/bitcoin/indicators/{name}"

    # newest page (default order desc)
    with candle_rows_read() as read:
        body = client.get(path, {"limit": 100}).json()
    assert len(body["data"]) == 100
    assert read[0] <= 101 + warm < N / 3, read[0]
    assert_same(body["data"], expected)

    # a range in the middle, oldest first, then its next page by cursor
    start = (hour0 - timedelta(hours=2500)).isoformat()
    with candle_rows_read() as read:
        first = client.get(path, {"start": start, "order": "asc", "limit": 50}).json()
    assert read[0] <= 51 + warm, read[0]
    second = client.get(path, {"start": start, "order": "asc", "limit": 50, "cursor": first["next_cursor"]})
    pages = first["data"] + second.json()["data"]
    assert [p["time"] for p in pages] == times[N - 2501 : N - 2401]
    assert_same(pages, expected)

    # a range ending in the past, newest first
    end = (hour0 - timedelta(hours=1000)).isoformat()
    body = client.get(path, {"end": end, "limit": 30}).json()
    assert [p["time"] for p in body["data"]] == times[N - 1001 - 30 : N - 1001][::-1]
    assert_same(body["data"], expected)


def test_the_start_of_the_series_keeps_its_warm_up_nulls(client, long_series):
    times, series = long_series
    expected = _expected("rsi", {"period": 14}, series, times)
    body = client.get("/v1/coins/bitcoin/indicators/rsi", {"order": "asc", "limit": 20}).json()
    assert [p["time"] for p in body["data"]] == times[:20]
    assert [p["value"] for p in body["data"]] == [expected[t]["value"] for t in times[:20]]
    assert body["data"][13]["value"] is None and body["data"][14]["value"] is not None
