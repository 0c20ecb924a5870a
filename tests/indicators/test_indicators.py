"""The house indicators (computed by TA-Lib's C functions) against independent references: the
numpy implementations they had before (tests/indicators/numpy_reference.py, to 1e-9 relative, tiny
and huge prices included), TA-Lib called directly, and plain loops."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import talib

from marketdata import indicators as ind
from tests.indicators import numpy_reference as ref

LENGTHS = [0, 1, 2, 13, 14, 15, 26, 34, 35, 300, 2500]
#: Price levels: a coin at 1e-12 USD, 1e-9 (where an absolute epsilon of 1e-8 would bite), ~1, BTC.
SCALES = [1e-12, 1e-9, 1e-4, 1.0, 100.0, 1e5]


def _series(seed: int, n: int, scale: float = 100.0):
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high = close * (1 + rng.uniform(0, 0.02, n))
    low = close * (1 - rng.uniform(0, 0.02, n))
    return high, low, close


def assert_same(ours: np.ndarray, ref_: np.ndarray, scale: float = 1.0, rtol: float = 1e-9):
    ref_ = np.asarray(ref_, dtype=float)
    assert ours.shape == ref_.shape
    assert np.array_equal(np.isnan(ours), np.isnan(ref_)), "warm-up (NaN) positions differ"
    mask = ~np.isnan(ref_)
    np.testing.assert_allclose(ours[mask], ref_[mask], rtol=rtol, atol=rtol * scale)


def one(name: str, series, **params) -> dict[str, np.ndarray]:
    high, low, close = series
    return ind.compute(name, params=params, timeframe="1h", series={"high": high, "low": low, "close": close})


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("period", [2, 5, 14, 30])
def test_single_output_indicators_equal_the_numpy_implementation(scale, n, period):
    s = _series(n * 31 + period, n, scale)
    high, low, close = s
    # price-valued outputs compared at the price scale (a value near 0 has no relative precision)
    assert_same(one("sma", s, period=period)["value"], ref.sma(close, period), scale)
    assert_same(one("ema", s, period=period)["value"], ref.ema(close, period), scale)
    assert_same(one("rsi", s, period=period)["value"], ref.rsi(close, period), 100)
    assert_same(one("atr", s, period=period)["value"], ref.atr(high, low, close, period), scale)
    if period >= 2:
        assert_same(one("volatility", s, period=period)["value"], ref.volatility(close, period, "1h"), 1.0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(
    ("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1), (26, 12, 9), (2, 2, 2)]
)
def test_macd_equals_the_numpy_implementation(scale, n, fast, slow, signal):
    s = _series(n + fast * 7 + slow, n, scale)
    ours = one("macd", s, fast=fast, slow=slow, signal=signal)
    expected = ref.macd(s[2], fast, slow, signal)
    for key in ("macd", "signal", "histogram"):  # differences of prices: at the price scale
        assert_same(ours[key], expected[key], scale)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(("period", "stddev"), [(2, 2.0), (5, 1.5), (20, 2.0), (20, 0.5)])
def test_bbands_equal_the_numpy_implementation(scale, n, period, stddev):
    s = _series(n + period, n, scale)
    ours = one("bbands", s, period=period, stddev=stddev)
    expected = ref.bbands(s[2], period, stddev)
    for key in ("upper", "middle", "lower"):
        assert_same(ours[key], expected[key], 0.0)  # band values: relative to themselves


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("period", [2, 5, 14, 30])
def test_single_output_indicators_match_talib(n, period):
    high, low, close = s = _series(n * 31 + period, n)
    assert_same(one("sma", s, period=period)["value"], talib.SMA(close, period), 100)
    assert_same(one("ema", s, period=period)["value"], talib.EMA(close, period), 100)
    assert_same(one("rsi", s, period=period)["value"], talib.RSI(close, period), 100)
    assert_same(one("atr", s, period=period)["value"], talib.ATR(high, low, close, period), 100)


@pytest.mark.parametrize("n", LENGTHS)
def test_atr_period_one_is_true_range(n):
    high, low, close = s = _series(7 + n, n)
    assert_same(one("atr", s, period=1)["value"], talib.ATR(high, low, close, 1), 100)
    assert_same(one("atr", s, period=1)["value"], ref.true_range(high, low, close), 100)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(
    ("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1), (26, 12, 9), (2, 2, 2)]
)
def test_macd_matches_talib_including_its_fast_ema_seeding(n, fast, slow, signal):
    s = _series(n + fast * 7 + slow, n)
    ours = one("macd", s, fast=fast, slow=slow, signal=signal)
    ref_macd, ref_signal, ref_hist = talib.MACD(s[2], fast, slow, signal)
    assert_same(ours["macd"], ref_macd, 100)
    assert_same(ours["signal"], ref_signal, 100)
    assert_same(ours["histogram"], ref_hist, 100)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(("period", "stddev"), [(2, 2.0), (5, 1.5), (20, 2.0), (20, 0.5)])
def test_bbands_match_talib(n, period, stddev):
    s = _series(n + period, n)
    ours = one("bbands", s, period=period, stddev=stddev)
    upper, middle, lower = talib.BBANDS(s[2], period, stddev, stddev, 0)
    assert_same(ours["upper"], upper, 100)
    assert_same(ours["middle"], middle, 100)
    assert_same(ours["lower"], lower, 100)


# --- plain-loop references (textbook definitions written independently, one value at a time) ----


def loop_ema(close, period):
    out = [math.nan] * len(close)
    if len(close) < period:
        return out
    k = 2 / (period + 1)
    value = sum(close[:period]) / period
    out[period - 1] = value
    for t in range(period, len(close)):
        value = close[t] * k + value * (1 - k)
        out[t] = value
    return out


def loop_rsi(close, period):
    out = [math.nan] * len(close)
    if len(close) <= period:
        return out
    changes = [close[i] - close[i - 1] for i in range(1, len(close))]
    gain = sum(max(c, 0) for c in changes[:period]) / period
    loss = sum(max(-c, 0) for c in changes[:period]) / period
    out[period] = 0.0 if gain + loss == 0 else 100 * gain / (gain + loss)
    for t in range(period + 1, len(close)):
        c = changes[t - 1]
        gain = (gain * (period - 1) + max(c, 0)) / period
        loss = (loss * (period - 1) + max(-c, 0)) / period
        out[t] = 0.0 if gain + loss == 0 else 100 * gain / (gain + loss)
    return out


def loop_volatility(close, period, per_year):
    out = [math.nan] * len(close)
    returns = [math.log(close[i] / close[i - 1]) for i in range(1, len(close))]
    for t in range(period, len(close)):
        out[t] = statistics.stdev(returns[t - period : t]) * math.sqrt(per_year)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ema_and_rsi_match_plain_loops(seed):
    s = _series(seed, 400)
    close = s[2]
    for period in (2, 9, 14, 50):
        assert_same(one("ema", s, period=period)["value"], loop_ema(list(close), period), 100)
        assert_same(one("rsi", s, period=period)["value"], loop_rsi(list(close), period), 100)


@pytest.mark.parametrize(
    ("timeframe", "per_year"), [("1m", 525600), ("1h", 8760), ("4h", 2190), ("1d", 365), ("1w", 365 / 7)]
)
@pytest.mark.parametrize("period", [2, 10, 30])
def test_volatility_is_annualised_sample_stdev_of_log_returns(timeframe, per_year, period):
    s = _series(period, 200)
    expected = loop_volatility(list(s[2]), period, per_year)
    got = ind.compute("volatility", params={"period": period}, timeframe=timeframe,
                      series={"high": s[0], "low": s[1], "close": s[2]})["value"]  # fmt: skip
    assert_same(got, expected, 1.0)


def test_volatility_of_constant_growth_is_zero_and_warm_up_is_nan():
    close = 100 * 1.01 ** np.arange(50)
    vol = one("volatility", (close, close, close), period=20)["value"]
    assert np.isnan(vol[:20]).all()
    np.testing.assert_allclose(vol[20:], 0.0, atol=1e-12)


def test_volatility_is_nan_where_a_close_is_not_positive():
    close = np.array([1.0, 2.0, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    vol = one("volatility", (close, close, close), period=2)["value"]
    assert_same(vol, ref.volatility(close, 2, "1h"), 1.0)
    assert np.isnan(vol[:5]).all()  # windows touching the zero close
    assert not np.isnan(vol[5:]).any()


def test_known_series():
    rising = np.arange(1.0, 41.0)
    flat = np.full(40, 5.0)
    assert (one("rsi", (rising,) * 3, period=14)["value"][14:] == 100.0).all()
    assert (one("rsi", (flat,) * 3, period=14)["value"][14:] == 0.0).all()  # TA-Lib's convention for G+L = 0
    np.testing.assert_array_equal(one("sma", (rising,) * 3, period=3)["value"][2:5], [2.0, 3.0, 4.0])
    bands = one("bbands", (flat,) * 3, period=20, stddev=2.0)
    assert (bands["upper"][19:] == 5.0).all() and (bands["lower"][19:] == 5.0).all()


@pytest.mark.parametrize("name", list(ind.HOUSE))
def test_house_indicators_are_scale_invariant_for_tiny_prices(name):
    """A coin priced 1e-9 (or 1e-12) gets the values of the same series priced 100, in its units."""
    spec = ind.INDICATORS[name]
    params = ind.defaults(name)
    high, low, close = _series(5, 300)
    normal = ind.compute(
        name, params=params, timeframe="1h", series={"high": high, "low": low, "close": close}
    )
    for factor in (1e-9, 1e-12):
        series = {"high": high * factor, "low": low * factor, "close": close * factor}
        tiny = ind.compute(name, params=params, timeframe="1h", series=series)
        for key, unit in zip(spec.outputs, spec.units, strict=True):
            assert_same(tiny[key] / factor**unit, normal[key], 100)


@pytest.mark.parametrize("name", list(ind.HOUSE))
def test_prefix_of_series_gives_the_same_values(name):
    """A value at t uses only data up to t: computing on a prefix changes nothing before its end."""
    high, low, close = _series(11, 500)
    spec = ind.INDICATORS[name]
    params = {p.name: p.default for p in spec.params}
    full = ind.compute(name, params=params, timeframe="1h", series={"high": high, "low": low, "close": close})
    part = ind.compute(
        name,
        params=params,
        timeframe="1h",
        series={"high": high[:321], "low": low[:321], "close": close[:321]},
    )
    for key in spec.outputs:
        np.testing.assert_array_equal(full[key][:321], part[key])


@pytest.mark.parametrize("name", list(ind.HOUSE))
def test_registry_lookback_is_the_first_non_nan_index(name):
    high, low, close = _series(3, 400)
    spec = ind.INDICATORS[name]
    params = {p.name: p.default for p in spec.params}
    out = ind.compute(name, params=params, timeframe="1d", series={"high": high, "low": low, "close": close})
    first = min(int(np.argmax(~np.isnan(out[key]))) for key in spec.outputs)
    assert first == spec.lookback(params)


def test_screener_history_window_gives_the_full_history_values():
    """The screener reads only the last HISTORY candles; its EMA-type values must equal full history."""
    from marketdata import screener

    high, low, close = _series(21, 3 * screener.HISTORY)
    full = screener.compute_latest("1h", high, low, close, None)
    cut = slice(-screener.HISTORY, None)
    window = screener.compute_latest("1h", high[cut], low[cut], close[cut], None)
    assert full.keys() == window.keys()
    for key, value in full.items():
        if value is None:
            assert window[key] is None
        else:
            assert window[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
