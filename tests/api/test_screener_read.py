"""The screener's read: coins whose last HISTORY candles are all in the recent window come from the
one grouped query, the others (gaps, young or stale coins) from the per-coin fallback; both give
every coin exactly its last HISTORY closed candles, so the stored values are those computed over
them (and, to rounding, the indicator endpoint's)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection

from marketdata import screener, services
from marketdata.models import LatestIndicator
from tests.api.conftest import write_hourly


def _closed_series(coin_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT high, low, close FROM marketdata_candle WHERE coin_id = %s AND timeframe = '1h' "
            "AND closed ORDER BY bucket_start",
            [coin_id],
        )
        h, lo, c = zip(*cur.fetchall(), strict=True)
    return np.array(h), np.array(lo), np.array(c)


@pytest.fixture
def coins(db, django_capture_on_commit_callbacks, hour0):
    with django_capture_on_commit_callbacks(execute=True):
        ids = services.coins_upsert(
            coins=[services.CoinIn(c, c[:3], c.title()) for c in ("full", "gappy", "young", "stale", "tiny")]
        )
        write_hourly(ids["full"], 800, hour0, seed=1, start=30_000.0)
        write_hourly(ids["gappy"], 800, hour0, seed=2, start=2.0)
        write_hourly(ids["young"], 30, hour0, seed=3, start=0.5)
        write_hourly(ids["stale"], 700, hour0 - timedelta(days=60), seed=4, start=7.0)  # stopped 60 days ago
        write_hourly(ids["tiny"], 800, hour0, seed=5, start=3e-9)
        with connection.cursor() as cur:  # 30 missing hours inside gappy's recent window
            cur.execute(
                "DELETE FROM marketdata_candle WHERE coin_id = %s AND timeframe = '1h' "
                "AND bucket_start BETWEEN %s AND %s",
                [ids["gappy"], hour0 - timedelta(hours=200), hour0 - timedelta(hours=171)],
            )
    return ids


def test_every_coin_gets_the_values_of_its_last_history_candles(coins, hour0):
    result = screener.latest_indicators_refresh(timeframe="1h", now=hour0 + timedelta(minutes=5))
    assert result.coins == 5
    rows = {r.coin_id: r for r in LatestIndicator.objects.filter(timeframe="1h")}
    for name, coin_id in coins.items():
        h, lo, c = _closed_series(coin_id)
        cut = slice(-screener.HISTORY, None)
        expected = screener.compute_latest("1h", h[cut], lo[cut], c[cut], None)
        row = rows[coin_id]
        for field, value in expected.items():
            if field == "volume_24h":
                continue
            got = getattr(row, field)
            if value is None:
                assert got is None, (name, field)
            else:
                assert got == pytest.approx(value, rel=1e-12, abs=0), (name, field)
    assert rows[coins["tiny"]].rsi is not None and 0 < rows[coins["tiny"]].rsi < 100
    assert (
        rows[coins["young"]].rsi is not None and rows[coins["young"]].macd is None
    )  # 29 closed candles: macd needs 34


def test_the_read_gives_each_coin_its_last_history_closed_candles_in_coin_order(coins, hour0):
    # full and tiny come from the grouped query; gappy, young and stale from the LATERAL fallback
    read = screener._read("1h", None, hour0 + timedelta(minutes=5))
    assert [r.coin_id for r in read] == sorted(coins.values())
    assert all(len(r.close) == min(screener.HISTORY, len(_closed_series(r.coin_id)[2])) for r in read)
