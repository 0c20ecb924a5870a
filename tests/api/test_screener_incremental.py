"""The screener's incremental refresh gives the values of the full recomputation (TA-Lib over each
coin's last HISTORY closed candles, what every refresh computed before issue 16), refresh after
refresh, on realistic series: random walks at very different prices, gaps, a flat stretch, a coin
added mid-way that grows past HISTORY candles, late corrections of recent candles (re-read), a
correction and a gap filled long before the state's anchor (the change log: recomputed in full), a
coin delisted."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from marketdata import screener, services
from marketdata.models import CandleChange, Coin, LatestIndicator

H = timedelta(hours=1)
PRICE_FIELDS = ("close", "sma", "ema", "macd", "macd_signal", "macd_histogram", "atr", "bb_middle")


class Market:
    """Hourly candles of a few coins, written through the write path one hour at a time."""

    def __init__(self, ids: dict[str, int], start: datetime):
        self.ids = ids
        self.rng = np.random.default_rng(16)
        self.price = {"steady": 30_000.0, "gappy": 2.0, "tiny": 3e-9, "flat": 1.0, "late": 0.5, "gone": 9.0}
        self.start = start

    def candle(self, name: str, at: datetime, price: float | None = None) -> services.CandleRow:
        if price is None:
            if name == "flat" and at.hour % 48 < 30:
                price = self.price[name]  # long stretches without a move
            else:
                price = self.price[name] * math.exp(self.rng.normal(0, 0.004))
            self.price[name] = price
        high = price * (1 + self.rng.uniform(0, 0.002))
        low = price * (1 - self.rng.uniform(0, 0.002))
        volume = None if at.hour == 7 else float(self.rng.uniform(1e5, 1e9))
        return services.CandleRow(self.ids[name], "1h", at, price, high, low, price, None, volume, None, True)

    def write(self, rows: list[services.CandleRow], now: datetime) -> None:
        services.candles_upsert(rows=rows, source="test", now=now)


def expected(coin_id: int) -> dict | None:
    """The full recomputation: TA-Lib over the coin's last HISTORY closed candles in the database."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT high, low, close FROM marketdata_candle WHERE coin_id = %s AND timeframe = '1h' "
            "AND closed ORDER BY bucket_start DESC LIMIT %s",
            [coin_id, screener.HISTORY],
        )
        rows = cur.fetchall()[::-1]
        cur.execute(
            "SELECT volume_24h FROM marketdata_candle WHERE coin_id = %s AND timeframe = '1h' AND closed "
            "ORDER BY bucket_start DESC LIMIT 1",
            [coin_id],
        )
        vol24 = cur.fetchone()
    if not rows:
        return None
    h, lo, c = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
    return screener.compute_latest("1h", h, lo, c, vol24[0])


def assert_same(got: LatestIndicator, want: dict, name: str) -> None:
    """Equal to floating-point rounding: TA-Lib's running sums (SMA, variances) round differently
    depending on where the window starts, and so does any refresh after the first."""
    for field, value in want.items():
        mine = getattr(got, field)
        if value is None or mine is None:
            assert mine is None and value is None, (name, field, mine, value)
        elif field in ("change_pct", "volume_24h"):
            assert mine == value, (name, field)
        elif field in PRICE_FIELDS:
            assert abs(mine - value) <= 1e-13 * abs(want["close"]), (name, field, mine, value)
        elif field == "rsi":
            assert abs(mine - value) <= 1e-11, (name, field, mine, value)
        elif field == "volatility":
            assert mine == pytest.approx(value, rel=1e-11, abs=1e-15), (name, field, mine, value)
        else:  # the bands: sigma² = E[x²] - E[x]² is where TA-Lib rounds; compare it there
            mid = want["bb_middle"]
            var_mine, var_want = ((mine - mid) / 2) ** 2, ((value - mid) / 2) ** 2
            assert abs(var_mine - var_want) <= 1e-13 * mid * mid, (name, field, mine, value)


@pytest.fixture
def market(db, hour0):
    ids = services.coins_upsert(
        coins=[
            services.CoinIn(n, n[:3], n.title()) for n in ("steady", "gappy", "tiny", "flat", "late", "gone")
        ]
    )
    start = hour0 - 800 * H
    m = Market(ids, start)
    rows = []
    for i in range(700):
        at = start + i * H
        for name in ("steady", "gappy", "tiny", "flat", "gone"):
            if name == "gappy" and 300 <= i < 340:
                continue  # a gap of 40 hours
            rows.append(m.candle(name, at))
        if i >= 700 - (screener.HISTORY - 12):  # listed later: HISTORY - 12 candles when the test starts
            rows.append(m.candle("late", at))
    m.write(rows, now=start + 700 * H)
    return m


def check_all(market: Market, now: datetime) -> None:
    rows = {r.coin_id: r for r in LatestIndicator.objects.filter(timeframe="1h")}
    for name, coin_id in market.ids.items():
        want = expected(coin_id)
        if not Coin.objects.get(pk=coin_id).active:
            assert coin_id not in rows
            continue
        assert_same(rows[coin_id], want, name)


def test_incremental_refreshes_equal_the_full_recomputation(market):
    start, ids = market.start, market.ids
    now = start + 700 * H
    first = screener.latest_indicators_refresh(timeframe="1h", now=now)
    assert (first.coins, first.full) == (6, 6)  # no state yet: all in full
    check_all(market, now)
    assert not CandleChange.objects.filter(timeframe="1h").exists()  # consumed
    fulls = []
    for i in range(700, 760):
        at = start + i * H
        rows = [
            market.candle(n, at)
            for n in ("steady", "tiny", "flat", "late") + (() if i % 7 == 3 else ("gappy",))
        ]
        if i == 720:  # a late correction of the candle 3 hours back: re-read, no full recomputation
            rows.append(market.candle("steady", at - 3 * H, price=market.price["steady"] * 1.01))
        if i == 730:  # a correction long before the state's anchor: the change log, recomputed in full
            rows.append(market.candle("tiny", start + 650 * H, price=4e-9))
        if i == 740:  # a gap filled from history
            rows += [market.candle("gappy", start + j * H) for j in range(300, 310)]
        if i == 745:
            Coin.objects.filter(pk=ids["gone"]).update(active=False)
        elif i < 745:
            rows.append(market.candle("gone", at))
        now = at + H + timedelta(minutes=1)
        market.write(rows, now=now)
        result = screener.latest_indicators_refresh(timeframe="1h", now=now)
        fulls.append(result.full)
        check_all(market, now)
    # "late" had HISTORY - 12 candles: full until it has HISTORY (the 12th new hour), then incremental;
    # the old correction of "tiny" and the filled gap of "gappy" cost one full recomputation each
    young = [1] * 11 + [1] + [0] * 48
    young[730 - 700] += 1
    young[740 - 700] += 1
    assert fulls == young


def test_full_refresh_and_incremental_refresh_store_the_same_values(market):
    now = market.start + 700 * H
    screener.latest_indicators_refresh(timeframe="1h", now=now)
    at = market.start + 700 * H
    market.write(
        [market.candle(n, at) for n in ("steady", "gappy", "tiny", "flat", "late", "gone")], now=at + H
    )
    incremental = screener.latest_indicators_refresh(timeframe="1h", now=at + H)
    assert incremental.full == 1  # "late" only
    got = {r.coin_id: r for r in LatestIndicator.objects.filter(timeframe="1h")}
    everything = screener.latest_indicators_refresh(timeframe="1h", now=at + H, full=True)
    assert everything.full == 6
    for r in LatestIndicator.objects.filter(timeframe="1h"):
        assert r.time == got[r.coin_id].time
        want = {f: getattr(r, f) for f in screener.FIELDS}
        assert_same(got[r.coin_id], want, r.coin_id)


def test_the_write_path_logs_changes_to_closed_candles_only(db, hour0):
    ids = services.coins_upsert(coins=[services.CoinIn("a", "a", "A")])
    row = services.CandleRow(ids["a"], "1h", hour0, 1.0, 1.0, 1.0, 1.0, None, None, None, None)
    services.candles_upsert(rows=[row], source="test", now=hour0 + timedelta(minutes=5))  # open
    assert not CandleChange.objects.exists()
    services.candles_close(now=hour0 + 2 * H)  # closes the 1h candle
    assert list(CandleChange.objects.values_list("timeframe", "coin_id", "bucket_start")) == [
        ("1h", ids["a"], hour0)
    ]
    services.candles_upsert(rows=[row._replace(close=2.0, high=2.0)], source="test", now=hour0 + 2 * H)
    assert CandleChange.objects.count() == 2  # a correction of the closed candle
    services.candles_upsert(rows=[row._replace(close=2.0, high=2.0)], source="test", now=hour0 + 2 * H)
    assert CandleChange.objects.count() == 2  # unchanged: not written, not logged


def test_a_refresh_of_some_coins_consumes_only_their_changes(market):
    now = market.start + 700 * H
    screener.latest_indicators_refresh(timeframe="1h", now=now)
    at = market.start + 700 * H
    market.write([market.candle(n, at) for n in ("steady", "gappy", "tiny")], now=at + H)
    assert set(CandleChange.objects.values_list("coin_id", flat=True)) == {
        market.ids["steady"],
        market.ids["gappy"],
        market.ids["tiny"],
    }
    result = screener.latest_indicators_refresh(timeframe="1h", coin_ids=[market.ids["steady"]], now=at + H)
    assert (result.coins, result.full) == (1, 0)
    assert set(CandleChange.objects.values_list("coin_id", flat=True)) == {
        market.ids["gappy"],
        market.ids["tiny"],
    }
    rows = {r.coin_id: r for r in LatestIndicator.objects.filter(timeframe="1h")}
    assert rows[market.ids["steady"]].time == at
    assert rows[market.ids["gappy"]].time == at - H  # not refreshed yet
    assert_same(rows[market.ids["steady"]], expected(market.ids["steady"]), "steady")
