"""Ticks → 1m candles and roll-ups 1m → 5m → 15m → 1h → 4h/1d → 1w, against independent computations."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from marketdata import selectors, services
from marketdata.models import TIMEFRAME_DELTA
from marketdata.services import CandleRow, TickIn


def stored(coin_id: int, timeframe: str) -> list[dict]:
    rows = selectors.candles_range(coin_id=coin_id, timeframe=timeframe, limit=100_000, newest_first=False)
    return [dict(zip(selectors.CANDLE_FIELDS, r, strict=True)) for r in rows]


# --- ticks → 1m -----------------------------------------------------------------------------------
def truth_1m(ticks, polled_minutes, first_minute, last_minute, now):
    """Independent: walk the minutes; ticks of a minute make its candle, else a polled minute
    carries the last close forward (filled), else it is a gap."""
    by_minute: dict = {}
    for t in {(t.time, t.price, t.volume_24h, t.market_cap) for t in ticks}:  # the same tick twice = once
        by_minute.setdefault(t[0].replace(second=0, microsecond=0), []).append(t)
    out = {}
    last = None
    m = first_minute
    while m <= last_minute:
        if m in by_minute:
            ts = sorted(by_minute[m])
            prices = [p for _, p, _, _ in ts]
            last = (ts[-1][1], ts[-1][2], ts[-1][3])
            out[m] = (prices[0], max(prices), min(prices), prices[-1], None, ts[-1][2], ts[-1][3], False)
        elif m in polled_minutes and last is not None:
            out[m] = (last[0], last[0], last[0], last[0], None, last[1], last[2], True)
        m += timedelta(minutes=1)
    return {k: (*v[:7], k + timedelta(minutes=1) <= now, v[7]) for k, v in out.items()}


def as_truth_shape(rows):
    return {
        r["bucket_start"]: (
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            r["volume"],
            r["volume_24h"],
            r["market_cap"],
            r["closed"],
            r["filled"],
        )
        for r in rows
    }


def test_ticks_build_1m_candles_with_filled_minutes_and_gaps(coins, t0):
    rng = random.Random(7)
    coin = coins[0]
    tick_minutes = [0, 1, 2, 5, 8, 9, 13]
    ticks = []
    for m in tick_minutes:
        for sec in rng.sample(range(60), rng.randint(1, 4)):  # one upstream value per update time
            ticks.append(
                TickIn(coin, t0 + timedelta(minutes=m, seconds=sec), rng.uniform(90, 110), 1e6 + m, 5e8)
            )
    polled = {t0 + timedelta(minutes=m) for m in range(15) if m not in (6, 11)}  # 6 and 11: failed polls
    rng.shuffle(ticks)
    services.ticks_record(ticks=ticks + ticks[:3])  # out of order, some twice
    now = t0 + timedelta(minutes=14, seconds=20)

    # built in two overlapping calls, as the minute-by-minute pipeline does
    services.candles_build_1m(
        since=t0, until=t0 + timedelta(minutes=8), polled=[(coin, m) for m in polled], now=now
    )
    services.candles_build_1m(
        since=t0 + timedelta(minutes=5),
        until=t0 + timedelta(minutes=15),
        polled=[(coin, m) for m in polled if m >= t0 + timedelta(minutes=8)],
        now=now,
    )
    expected = truth_1m(ticks, polled, t0, t0 + timedelta(minutes=14), now)
    got = as_truth_shape(stored(coin, "1m"))
    assert got == expected
    assert t0 + timedelta(minutes=6) not in got and t0 + timedelta(minutes=11) not in got  # gaps stay gaps
    assert got[t0 + timedelta(minutes=14)][7] is False  # the current minute is open

    # a late tick in a filled minute: the minute becomes real and the minutes carried from it follow
    late = TickIn(coin, t0 + timedelta(minutes=3, seconds=5), 123.0, 2e6, 6e8)
    services.ticks_record(ticks=[late])
    result = services.candles_build_1m(
        since=t0 + timedelta(minutes=3), until=t0 + timedelta(minutes=15), now=now
    )
    expected = truth_1m([*ticks, late], polled, t0, t0 + timedelta(minutes=14), now)
    assert as_truth_shape(stored(coin, "1m")) == expected
    assert result.updated == 2  # minute 3 (now real) and minute 4 (carried from the new close)

    # rebuilding everything again changes nothing
    again = services.candles_build_1m(
        since=t0, until=t0 + timedelta(minutes=15), polled=[(coin, m) for m in polled], now=now
    )
    assert again.written == 0


def test_a_coin_without_any_history_gets_no_filled_minute(coins, t0):
    result = services.candles_build_1m(
        since=t0, until=t0 + timedelta(minutes=5), polled=[(coins[1], t0)], now=t0
    )
    assert result.written == 0


# --- roll-ups -------------------------------------------------------------------------------------
def _random_1m(coin_id, start, minutes, seed, volume_null=False):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, minutes)))
    opn = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.001, minutes))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.001, minutes))
    keep = rng.uniform(size=minutes) > 0.1  # ~10% gaps
    vol = rng.uniform(0, 10, minutes)
    vol24 = rng.uniform(1e6, 2e6, minutes)
    vol24_null = rng.uniform(size=minutes) < 0.2
    filled = rng.uniform(size=minutes) < 0.3
    rows = []
    for i in range(minutes):
        if not keep[i]:
            continue
        rows.append(
            CandleRow(
                coin_id,
                "1m",
                start + timedelta(minutes=i),
                float(opn[i]),
                float(high[i]),
                float(low[i]),
                float(close[i]),
                None if volume_null or i % 7 == 0 else float(vol[i]),
                None if vol24_null[i] else float(vol24[i]),
                float(close[i] * 1e6),
                None,
                bool(filled[i]),
            )
        )
    return rows


def pandas_rollup(rows: list[CandleRow], timeframe: str, now) -> dict:
    df = pd.DataFrame(rows, columns=CandleRow._fields).sort_values("bucket_start")
    step = pd.Timedelta(TIMEFRAME_DELTA[timeframe])
    df["b"] = df["bucket_start"].dt.floor(step) if timeframe != "1d" else df["bucket_start"].dt.floor("D")
    out = {}
    for b, g in df.groupby("b"):
        v = g["volume"].dropna()
        v24 = g["volume_24h"].dropna()
        mc = g["market_cap"].dropna()
        out[b.to_pydatetime()] = (
            g["open"].iloc[0],
            g["high"].max(),
            g["low"].min(),
            g["close"].iloc[-1],
            None if v.empty else float(v.sum()),
            None if v24.empty else float(v24.iloc[-1]),
            None if mc.empty else float(mc.iloc[-1]),
            b.to_pydatetime() + TIMEFRAME_DELTA[timeframe] <= now,
            bool(g["filled"].all()),
        )
    return out


def assert_same(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for k, e in expected.items():
        g = got[k]
        assert g[:4] == e[:4], k  # selected values: exact
        assert (g[4] is None) == (e[4] is None) and (
            g[4] is None or g[4] == pytest.approx(e[4], rel=1e-12)
        ), k
        assert g[5:] == e[5:], k


def test_rollups_equal_an_independent_pandas_computation(coins, t0):
    start = t0 - timedelta(days=1, hours=2)
    minutes = 2 * 24 * 60 + 437
    now = start + timedelta(minutes=minutes) - timedelta(seconds=20)  # mid-minute: current buckets open
    rows_a = _random_1m(coins[0], start, minutes, seed=1)
    rows_b = _random_1m(coins[1], start, minutes, seed=2, volume_null=True)
    services.candles_upsert(rows=rows_a + rows_b, source="test", now=now)
    services.candles_rollup(since=start, until=start + timedelta(minutes=minutes), now=now)
    for coin, rows in ((coins[0], rows_a), (coins[1], rows_b)):
        for tf in ("5m", "15m", "1h", "1d"):
            expected = pandas_rollup([r._replace(closed=None) for r in rows], tf, now)
            got = as_truth_shape(stored(coin, tf))
            assert_same(got, expected)
            assert any(not v[7] for v in got.values())  # the current bucket is there and open
    # coin b never has traded volume: every roll-up keeps volume null (not 0)
    assert all(r["volume"] is None for tf in ("5m", "1d") for r in stored(coins[1], tf))


def test_incremental_rollup_rewrites_only_the_buckets_containing_the_change(coins, t0):
    start = t0
    rows = _random_1m(coins[0], start, 180, seed=3)
    now = start + timedelta(hours=5)
    services.candles_upsert(rows=rows, source="test", now=now)
    services.candles_rollup(since=start, until=start + timedelta(minutes=180), now=now)

    def versions(tf):
        with connection.cursor() as cur:
            cur.execute(
                "SELECT bucket_start, xmin::text FROM marketdata_candle "
                "WHERE coin_id = %s AND timeframe = %s",
                [coins[0], tf],
            )
            return dict(cur.fetchall())

    higher = ("5m", "15m", "1h", "4h", "1d", "1w")
    before = {tf: versions(tf) for tf in higher}
    target = rows[100]
    bumped = target._replace(high=target.high * 1.5)
    result = services.candles_upsert(rows=[bumped], source="test", now=now)
    rolled = services.candles_rollup_result(result, now=now)
    assert {tf: r.updated for tf, r in rolled.items()} == dict.fromkeys(higher, 1)
    for tf in higher:
        after = versions(tf)
        changed = {b for b in after if after[b] != before[tf][b]}
        assert changed == {services.bucket_floor(tf, target.bucket_start)}
        assert stored(coins[0], tf)[
            [r["bucket_start"] for r in stored(coins[0], tf)].index(
                services.bucket_floor(tf, target.bucket_start)
            )
        ]["high"] == pytest.approx(bumped.high)
