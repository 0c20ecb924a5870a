"""The screener's incremental state: what the screener's seven indicators need to move from one
closed candle to the next without re-reading the last ``HISTORY`` candles (see marketdata.screener).

A coin's state is one float64 vector (:data:`WIDTH` values): the recursive parts of the EMA-type
indicators (EMA(20), MACD's fast/slow/signal EMAs, RSI's Wilder average gain and loss, ATR(14)),
the 24h volume of its newest candle and its last :data:`TAIL` closes (oldest first) — enough for
the windowed ones (SMA(20), Bollinger(20, 2), volatility(30), change %). Everything here works on
many coins at once (a matrix, one row per coin) with numpy; there is no Python loop over coins.

The recurrences are TA-Lib's own, operation for operation (TA-Lib keeps no state between calls,
so it cannot be resumed; this is its arithmetic, not another definition):

- EMA: ``ema = (close - ema) * k + ema``, ``k = 2 / (period + 1)`` (MACD's three EMAs the same);
- Wilder (RSI's average gain/loss, ATR): ``avg = (avg * (period - 1) + x) / period``;
- RSI ``100 * (gain / (gain + loss))`` (0 when both are 0); TR ``max(h - l, |c' - h|, |c' - l|)``;
- SMA and the population variance of Bollinger bands and of the volatility's log returns from the
  sums of the window (TA-Lib: running sums; ``E[x²] - E[x]²``; 0 when not positive).

The state of a coin is built (:func:`initial`) by running those recurrences over its last
``HISTORY`` closed candles, seeded as TA-Lib seeds them (the EMA from the SMA of its first
``period`` values, the Wilder averages from the mean of their first ``period`` inputs, MACD's fast
EMA seeded where its slow one starts). Thereafter :func:`advance` moves it by each new candle. The
weight left on a seed after the ``HISTORY - period`` candles that follow it is below 1e-19 (slowest:
Wilder 14), so the values equal those of TA-Lib over the last ``HISTORY`` candles — what the full
recomputation stores — to floating-point rounding (tests/api/test_screener_incremental.py).
"""

from __future__ import annotations

import math

import numpy as np

from marketdata import indicators

EMA_PERIOD, FAST, SLOW, SIGNAL, RSI_PERIOD, ATR_PERIOD = 20, 12, 26, 9, 14, 14
SMA_PERIOD, BB_PERIOD, BB_STDDEV, VOL_PERIOD = 20, 20, 2.0, 30
#: Closes kept: the volatility's 30 log returns need 31.
TAIL = VOL_PERIOD + 1
#: Candles needed before every indicator has a value and the seeds can be placed as TA-Lib places
#: them (MACD: slow 26 + signal 9 - 1; the longest).
MIN_CANDLES = max(SLOW + SIGNAL - 1, TAIL, RSI_PERIOD + 1, ATR_PERIOD + 1, EMA_PERIOD)

EMA, MACD_FAST, MACD_SLOW, MACD_SIGNAL, GAIN, LOSS, ATR, VOL24 = range(8)
CLOSES = slice(8, 8 + TAIL)
WIDTH = 8 + TAIL

_K = {p: 2.0 / (p + 1) for p in (EMA_PERIOD, FAST, SLOW, SIGNAL)}


def _tr(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    """TA-Lib's true range: the greatest of h - l, |c' - h|, |c' - l| (in that order)."""
    out = high - low
    np.maximum(out, np.abs(prev_close - high), out=out)
    np.maximum(out, np.abs(prev_close - low), out=out)
    return out


def advance(
    state: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, vol24: np.ndarray
) -> None:
    """Move every row of ``state`` (in place) by one candle: ``high``/``low``/``close``/``vol24``
    hold one value per row."""
    prev = state[:, CLOSES.stop - 1].copy()
    for col, period in ((EMA, EMA_PERIOD), (MACD_FAST, FAST), (MACD_SLOW, SLOW)):
        state[:, col] = (close - state[:, col]) * _K[period] + state[:, col]
    macd = state[:, MACD_FAST] - state[:, MACD_SLOW]
    state[:, MACD_SIGNAL] = (macd - state[:, MACD_SIGNAL]) * _K[SIGNAL] + state[:, MACD_SIGNAL]
    diff = close - prev
    state[:, GAIN] = (state[:, GAIN] * (RSI_PERIOD - 1) + np.maximum(diff, 0.0)) / RSI_PERIOD
    state[:, LOSS] = (state[:, LOSS] * (RSI_PERIOD - 1) + np.maximum(-diff, 0.0)) / RSI_PERIOD
    state[:, ATR] = (state[:, ATR] * (ATR_PERIOD - 1) + _tr(high, low, prev)) / ATR_PERIOD
    state[:, VOL24] = vol24
    state[:, CLOSES.start : CLOSES.stop - 1] = state[:, CLOSES.start + 1 : CLOSES.stop]
    state[:, CLOSES.stop - 1] = close


def initial(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, vol24: np.ndarray, stop: np.ndarray
) -> np.ndarray:
    """The states of several coins from their candles (``high``/``low``/``close``: one row per coin,
    oldest first, all of the same length ``>= MIN_CANDLES``), each taken after candle ``stop[i] - 1``
    of its row (``stop`` >= ``MIN_CANDLES``); ``vol24``: the 24h volume of those candles."""
    rows, n = close.shape
    if n < MIN_CANDLES or (len(stop) and int(stop.min()) < MIN_CANDLES):
        raise ValueError(f"a state needs at least {MIN_CANDLES} candles")
    state = np.empty((rows, WIDTH))
    out = np.empty((rows, WIDTH))
    # Seeds at TA-Lib's positions, by its sequential sums.
    state[:, EMA] = _seed_mean(close, 0, EMA_PERIOD)
    slow_end = SLOW  # the slow EMA's first value is at SLOW - 1; the fast one starts there too
    state[:, MACD_SLOW] = _seed_mean(close, 0, SLOW)
    state[:, MACD_FAST] = _seed_mean(close, SLOW - FAST, SLOW)
    diffs = np.diff(close[:, : RSI_PERIOD + 1], axis=1)
    state[:, GAIN] = _seed_sum(np.maximum(diffs, 0.0)) / RSI_PERIOD
    state[:, LOSS] = _seed_sum(np.maximum(-diffs, 0.0)) / RSI_PERIOD
    trs = np.stack([_tr(high[:, i], low[:, i], close[:, i - 1]) for i in range(1, ATR_PERIOD + 1)], axis=1)
    state[:, ATR] = _seed_sum(trs) / ATR_PERIOD
    # Run each recurrence from just after its seed; the state after candle i is complete once
    # every seed is placed (i >= MIN_CANDLES - 1), and the closes before it fill the tail.
    start = {EMA: EMA_PERIOD, MACD_SLOW: slow_end, GAIN: RSI_PERIOD + 1, ATR: ATR_PERIOD + 1}
    macd = np.empty((rows, SIGNAL))
    for i in range(n):
        c = close[:, i]
        if start[EMA] <= i:
            state[:, EMA] = (c - state[:, EMA]) * _K[EMA_PERIOD] + state[:, EMA]
        if slow_end <= i:
            for col, period in ((MACD_FAST, FAST), (MACD_SLOW, SLOW)):
                state[:, col] = (c - state[:, col]) * _K[period] + state[:, col]
        if slow_end - 1 <= i:
            m = state[:, MACD_FAST] - state[:, MACD_SLOW]
            j = i - (slow_end - 1)
            if j < SIGNAL:
                macd[:, j] = m
                if j == SIGNAL - 1:
                    state[:, MACD_SIGNAL] = _seed_sum(macd) / SIGNAL
            else:
                state[:, MACD_SIGNAL] = (m - state[:, MACD_SIGNAL]) * _K[SIGNAL] + state[:, MACD_SIGNAL]
        if start[GAIN] <= i:
            diff = c - close[:, i - 1]
            state[:, GAIN] = (state[:, GAIN] * (RSI_PERIOD - 1) + np.maximum(diff, 0.0)) / RSI_PERIOD
            state[:, LOSS] = (state[:, LOSS] * (RSI_PERIOD - 1) + np.maximum(-diff, 0.0)) / RSI_PERIOD
        if start[ATR] <= i:
            tr = _tr(high[:, i], low[:, i], close[:, i - 1])
            state[:, ATR] = (state[:, ATR] * (ATR_PERIOD - 1) + tr) / ATR_PERIOD
        done = stop == i + 1
        if done.any():
            out[done, : CLOSES.start] = state[done, : CLOSES.start]
            out[done, VOL24] = vol24[done]
            out[done, CLOSES] = close[done, i + 1 - TAIL : i + 1]
    return out


def _seed_sum(values: np.ndarray) -> np.ndarray:
    """Row sums added left to right, as TA-Lib's seed loops add."""
    return np.cumsum(values, axis=1)[:, -1]


def _seed_mean(close: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return _seed_sum(close[:, lo:hi]) / (hi - lo)


def values(state: np.ndarray, timeframe: str) -> dict[str, np.ndarray]:
    """The screener fields of every row (NaN = null), :data:`marketdata.screener.FIELDS` order."""
    closes = state[:, CLOSES]
    close, prev = closes[:, -1], closes[:, -2]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(prev != 0, (close / prev - 1.0) * 100.0, np.nan)
        window = closes[:, -BB_PERIOD:]
        mid = _seed_sum(window) / BB_PERIOD
        sigma = _sigma(_seed_sum(window * window) / BB_PERIOD, mid)
        width = sigma * BB_STDDEV
        gain, loss = state[:, GAIN], state[:, LOSS]
        total = gain + loss
        rsi = np.where(total != 0, 100.0 * (gain / np.where(total != 0, total, 1.0)), 0.0)
        returns = np.log(closes[:, 1:] / closes[:, :-1])
        positive = (closes > 0).all(axis=1)
        returns[~positive] = 0.0
        mean = _seed_sum(returns) / VOL_PERIOD
        nbdev = math.sqrt(indicators.periods_per_year(timeframe) * VOL_PERIOD / (VOL_PERIOD - 1))
        vol = _sigma(_seed_sum(returns * returns) / VOL_PERIOD, mean) * nbdev
        vol[~positive] = np.nan
    macd = state[:, MACD_FAST] - state[:, MACD_SLOW]
    return {
        "close": close,
        "change_pct": change,
        "volume_24h": state[:, VOL24],
        "sma": _seed_sum(closes[:, -SMA_PERIOD:]) / SMA_PERIOD,
        "ema": state[:, EMA].copy(),
        "rsi": rsi,
        "macd": macd,
        "macd_signal": state[:, MACD_SIGNAL].copy(),
        "macd_histogram": macd - state[:, MACD_SIGNAL],
        "bb_upper": mid + width,
        "bb_middle": mid,
        "bb_lower": mid - width,
        "atr": state[:, ATR].copy(),
        "volatility": vol,
    }


def _sigma(mean_square: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Population standard deviation from E[x²] and E[x] (TA-Lib: 0 when the difference is not positive)."""
    var = mean_square - mean * mean
    return np.sqrt(np.where(var > 0, var, 0.0))
