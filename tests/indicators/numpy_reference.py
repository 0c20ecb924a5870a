"""The numpy/pandas implementations the seven house indicators had before they were computed by
TA-Lib's C functions (issue 16), kept as an independent reference: marketdata.indicators must
equal them to 1e-9 relative, tiny-priced coins included (tests/indicators/test_indicators.py).

Original docstring:

Technical indicators, vectorised over whole series (numpy/pandas), defined exactly as TA-Lib.

Every function takes 1-D float arrays ordered oldest → newest (one element per stored candle) and
returns float arrays of the same length; warm-up positions (where TA-Lib outputs nothing) are NaN,
never invented values. The formulas are in docs/indicators.md; in short (``p`` = period, ``c`` =
close, ``k`` = smoothing factor):

- ``sma``: mean of the last ``p`` closes. First value at index ``p-1``.
- ``ema``: ``k = 2/(p+1)``, seeded with the SMA of the first ``p`` closes at index ``p-1``, then
  ``ema_t = ema_{t-1} + k·(c_t - ema_{t-1})``.
- ``rsi``: Wilder. Gains/losses of close-to-close changes; the first average gain/loss is the
  simple mean of the first ``p`` changes (value at index ``p``), then Wilder smoothing
  ``avg_t = (avg_{t-1}·(p-1) + x_t)/p``; ``rsi = 100·G/(G+L)`` and 0 when ``G+L = 0`` (TA-Lib).
- ``macd``: EMA(fast) - EMA(slow), where — as in TA-Lib — the fast EMA is seeded with the SMA of
  the ``fast`` closes ending at index ``slow-1`` (not at the series start), so both EMAs start
  together; ``signal`` = EMA(signal) of the MACD line (SMA-seeded), ``histogram`` = macd - signal.
  All three start at index ``slow+signal-2``. ``fast > slow`` are swapped, as TA-Lib does.
- ``bbands``: middle = SMA(p); upper/lower = middle ± ``stddev``·sigma, sigma the population standard
  deviation of the same ``p`` closes. First value at ``p-1``.
- ``atr``: true range ``TR_t = max(h_t-l_t, |h_t-c_{t-1}|, |l_t-c_{t-1}|)`` from index 1; the first
  ATR (index ``p``) is the mean of ``TR_1..TR_p``, then Wilder smoothing. ``p = 1`` gives TR.
- ``volatility`` (not in TA-Lib): sample standard deviation (n-1) of the last ``p`` log returns
  ``ln(c_t/c_{t-1})``, annualised by √(buckets per 365-day year) — crypto trades 24/7. First value at
  index ``p``; NaN where a close is not positive.

A value never depends on where the series passed in starts, as long as it starts at least
:func:`warmup` candles earlier: the API reads only the page asked for plus that warm-up
(``marketdata.selectors.series_window``), not the whole stored series. For the windowed indicators
(sma, bbands, volatility) the warm-up is the ``lookback`` (the candles one value is computed from),
and the values are the same bit for bit. The EMA-type ones (ema, rsi, macd, atr) depend in theory on
every value since the series start: their seed keeps a weight ``(1-k)^n`` after ``n`` more candles,
so their warm-up adds the ``n`` (:func:`fade`) that brings that weight below :data:`SEED_WEIGHT`
(2^-60, under a double's 2^-53 resolution). Values then equal the whole-series values to double
precision: bit for bit for all but about one in a million (a short-period RSI deep in a one-sided
run can differ in its last binary digit), see tests/indicators/test_windowed.py.
The warm-up of each indicator is listed in docs/indicators.md.

One deliberate difference from TA-Lib's C code: TA-Lib treats ``|G+L| < 1e-8`` (an absolute
epsilon) as zero in RSI, which makes the RSI of every coin priced below ~1e-6 read 0; we test for
exact zero, so tiny-priced coins get their true RSI. Results otherwise agree with TA-Lib to
floating-point rounding (the tests compare with ``talib`` at a relative tolerance of 1e-9).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Buckets per 365-day year, for annualising volatility (crypto markets never close).
PERIODS_PER_YEAR: dict[str, float] = {
    "1m": 365 * 24 * 60,
    "5m": 365 * 24 * 12,
    "15m": 365 * 24 * 4,
    "1h": 365 * 24,
    "4h": 365 * 6,
    "1d": 365,
    "1w": 365 / 7,
}


def _f(values) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


def _recursive(seed: float, xs: np.ndarray, alpha: float) -> np.ndarray:
    """``y_0 = seed``, ``y_i = y_{i-1} + alpha·(xs_i - y_{i-1})`` for i ≥ 1 (xs[0] is ignored).

    pandas' ``ewm(adjust=False)`` is this recursion in compiled code.
    """
    if len(xs) == 0:
        return np.empty(0)
    buf = xs.copy()
    buf[0] = seed
    if alpha >= 1.0:
        return buf
    return pd.Series(buf).ewm(alpha=alpha, adjust=False).mean().to_numpy()


def _window_sum(values: np.ndarray, period: int) -> np.ndarray:
    """Sums of every window of ``period`` consecutive values (len - period + 1 of them)."""
    return np.convolve(values, np.ones(period), mode="valid")


def _window_mean_var(values: np.ndarray, period: int, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of every window from running sums (for values near zero: log returns)."""
    s1 = _window_sum(values, period)
    s2 = _window_sum(values * values, period)
    mean = s1 / period
    var = (s2 - s1 * mean) / (period - ddof)
    return mean, np.maximum(var, 0.0)


def sma(close, period: int) -> np.ndarray:
    c = _f(close)
    out = _nan(len(c))
    if period < 1 or len(c) < period:
        return out
    out[period - 1 :] = _window_sum(c, period) / period
    return out


def ema(close, period: int) -> np.ndarray:
    c = _f(close)
    out = _nan(len(c))
    if period < 1 or len(c) < period:
        return out
    seed = c[:period].mean()
    out[period - 1 :] = _recursive(seed, c[period - 1 :], 2.0 / (period + 1))
    return out


def _wilder(values: np.ndarray, period: int) -> np.ndarray:
    """Wilder smoothing of ``values``: seed = mean of the first ``period``, at index ``period-1``."""
    out = _nan(len(values))
    if len(values) < period:
        return out
    seed = values[:period].mean()
    out[period - 1 :] = _recursive(seed, values[period - 1 :], 1.0 / period)
    return out


def rsi(close, period: int = 14) -> np.ndarray:
    c = _f(close)
    out = _nan(len(c))
    if period < 1 or len(c) <= period:
        return out
    diff = np.diff(c)
    gain = np.where(diff > 0, diff, 0.0)
    loss = np.where(diff < 0, -diff, 0.0)
    avg_gain = _wilder(gain, period)[period - 1 :]
    avg_loss = _wilder(loss, period)[period - 1 :]
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(total != 0.0, 100.0 * avg_gain / total, 0.0)
    out[period:] = value
    return out


def macd(close, fast: int = 12, slow: int = 26, signal: int = 9) -> dict[str, np.ndarray]:
    c = _f(close)
    n = len(c)
    if slow < fast:
        fast, slow = slow, fast
    macd_out, signal_out, hist_out = _nan(n), _nan(n), _nan(n)
    begin = slow - 1 + signal - 1
    if n > begin:
        # Both EMAs start at index slow-1; the fast one is seeded from the `fast` closes ending there.
        slow_ema = _recursive(c[:slow].mean(), c[slow - 1 :], 2.0 / (slow + 1))
        fast_ema = _recursive(c[slow - fast : slow].mean(), c[slow - 1 :], 2.0 / (fast + 1))
        line = fast_ema - slow_ema  # index 0 here = series index slow-1
        sig = _recursive(line[:signal].mean(), line[signal - 1 :], 2.0 / (signal + 1))
        macd_out[begin:] = line[signal - 1 :]
        signal_out[begin:] = sig
        hist_out[begin:] = line[signal - 1 :] - sig
    return {"macd": macd_out, "signal": signal_out, "histogram": hist_out}


def _window_variance(values: np.ndarray, mean: np.ndarray, period: int) -> np.ndarray:
    """Population variance of every window of ``period`` values about its own ``mean`` (two passes,
    no cancellation). Each value depends only on its window's values, never on where the series was
    cut: a windowed read gives the same numbers as the whole series. Blocks bound the memory."""
    windows = np.lib.stride_tricks.sliding_window_view(values, period)
    out = np.empty(len(windows))
    step = max(1, (1 << 20) // period)
    for lo in range(0, len(windows), step):
        block = windows[lo : lo + step] - mean[lo : lo + step, None]
        out[lo : lo + step] = (block * block).sum(axis=1) / period
    return out


def bbands(close, period: int = 20, stddev: float = 2.0) -> dict[str, np.ndarray]:
    c = _f(close)
    n = len(c)
    upper, middle, lower = _nan(n), _nan(n), _nan(n)
    if period >= 1 and n >= period:
        mean = _window_sum(c, period) / period
        sigma = np.sqrt(_window_variance(c, mean, period))  # population (ddof=0), as TA-Lib's STDDEV
        middle[period - 1 :] = mean
        upper[period - 1 :] = mean + stddev * sigma
        lower[period - 1 :] = mean - stddev * sigma
    return {"upper": upper, "middle": middle, "lower": lower}


def true_range(high, low, close) -> np.ndarray:
    h, lo, c = _f(high), _f(low), _f(close)
    out = _nan(len(c))
    if len(c) >= 2:
        prev = c[:-1]
        out[1:] = np.maximum.reduce([h[1:] - lo[1:], np.abs(h[1:] - prev), np.abs(lo[1:] - prev)])
    return out


def atr(high, low, close, period: int = 14) -> np.ndarray:
    tr = true_range(high, low, close)
    out = _nan(len(tr))
    if period < 1 or len(tr) <= period:
        return out
    out[1:] = _wilder(tr[1:], period)
    return out


def log_returns(close) -> np.ndarray:
    c = _f(close)
    out = _nan(len(c))
    if len(c) >= 2:
        prev, cur = c[:-1], c[1:]
        valid = (prev > 0) & (cur > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = np.where(valid, np.log(cur / prev), np.nan)
    return out


def volatility(close, period: int = 30, timeframe: str = "1d") -> np.ndarray:
    r = log_returns(close)
    out = _nan(len(r))
    if period < 2 or len(r) <= period:
        return out
    returns = r[1:]
    finite = np.isfinite(returns)
    _, var = _window_mean_var(np.where(finite, returns, 0.0), period, ddof=1)
    bad = _window_sum((~finite).astype(np.float64), period) > 0  # a window touching a missing return
    out[period:] = np.where(bad, np.nan, np.sqrt(var) * math.sqrt(PERIODS_PER_YEAR[timeframe]))
    return out
