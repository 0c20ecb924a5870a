"""The TA-Lib catalogue through the API: values over the stored candles (open included), parameters
validated as TA-Lib declares them (problem+json naming the parameter), one cached answer per
parameter set, the warm-up read only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.db import connection

from marketdata import indicators, services
from tests.api.conftest import write_hourly
from tests.api.test_indicator_window import candle_rows_read

N = 1500


@pytest.fixture
def series(db, django_capture_on_commit_callbacks, hour0):
    with django_capture_on_commit_callbacks(execute=True):
        ids = services.coins_upsert(coins=[services.CoinIn("bitcoin", "btc", "Bitcoin")])
        write_hourly(ids["bitcoin"], N, hour0, seed=9, start=0.00000042)  # a coin priced ~4e-7
    with connection.cursor() as cur:
        cur.execute(
            "SELECT bucket_start, open, high, low, close FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = '1h' ORDER BY bucket_start",
            [ids["bitcoin"]],
        )
        rows = cur.fetchall()
    t, o, h, lo, c = zip(*rows, strict=True)
    times = [x.strftime("%Y-%m-%dT%H:%M:%SZ") for x in t]
    return times, {"open": np.array(o), "high": np.array(h), "low": np.array(lo), "close": np.array(c)}


def _get(client, name: str, **query):
    return client.get(f"/v1/coins/bitcoin/indicators/{name}", {"timeframe": "1h", "limit": 200, **query})


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("willr", {"period": "5"}),
        ("stoch", {"fastk_period": "9", "slowk_matype": "1"}),
        ("kama", {}),
        ("ht_sine", {}),
        ("cdlengulfing", {}),
        ("bop", {}),
        ("ppo", {"matype": "13"}),
    ],
)
def test_a_catalogue_indicator_answers_the_values_over_the_whole_series(client, series, name, query):
    times, arrays = series
    params = indicators.defaults(name)
    params.update({k: int(v) for k, v in query.items()})
    warm = indicators.warmup(name, params)
    with candle_rows_read() as read:
        r = _get(client, name, **query)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["indicator"] == name and body["params"] == params
    assert body["outputs"] == list(indicators.INDICATORS[name].outputs)
    assert read[0] <= 200 + 1 + warm  # the page and its warm-up, not the whole series
    whole = indicators.compute(name, params=params, timeframe="1h", series=arrays)
    for point in body["data"]:
        i = times.index(point["time"])
        for key in body["outputs"]:
            expected = whole[key][i]
            if math.isnan(expected):
                assert point[key] is None
            else:
                assert point[key] == pytest.approx(
                    expected, rel=1e-9, abs=1e-9 * np.nanmax(np.abs(whole[key]))
                )


def test_different_parameters_are_different_cached_answers(client, series):
    a = _get(client, "willr", period="5").json()
    b = _get(client, "willr", period="30").json()
    again = _get(client, "willr", period="5").json()
    assert a["params"] == {"period": 5} and b["params"] == {"period": 30}
    assert a["data"] != b["data"] and again == a


@pytest.mark.parametrize(
    ("name", "query", "parameter"),
    [
        ("ma", {"matype": "7"}, "matype"),  # MAMA as a moving average is not offered
        ("ma", {"matype": "x"}, "matype"),
        ("willr", {"period": "1001"}, "period"),
        ("willr", {"period": "1"}, "period"),  # TA-Lib's minimum is 2
        ("t3", {"vfactor": "1.5"}, "vfactor"),  # TA-Lib's range 0 … 1
        ("willr", {"stddev": "2"}, "stddev"),  # a parameter of another indicator
        ("mama", {"fastlimit": "nan"}, "fastlimit"),
    ],
)
def test_bad_parameters_are_problems_naming_the_parameter(client, series, name, query, parameter):
    r = _get(client, name, **query)
    assert r.status_code == 400
    assert r["Content-Type"].startswith("application/problem+json")
    assert parameter in r.content.decode()


def test_volume_indicators_are_not_offered(client, series):
    for name in ("obv", "ad", "mfi", "vwma", "vwap"):
        r = _get(client, name)
        assert r.status_code == 404 and r["Content-Type"].startswith("application/problem+json")
