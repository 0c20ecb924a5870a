"""Windowed reads give the whole-series values: an indicator computed over the candles from
``warmup(name, params)`` before the first value asked for equals the same indicator computed over
the whole series (long random walks, every house indicator, default and extreme parameters).

- EMA-type (ema, rsi, macd, atr): to double precision: within :data:`ULPS` units in the last place
  of the output's scale (its largest value), and bit for bit for all but about one value in a
  million (an RSI with a short period deep in a one-sided run).
- Windowed (sma, bbands, volatility): TA-Lib keeps running sums (add the new candle, subtract the
  one leaving the window), whose rounding depends on where the computation started: within
  :data:`RUNNING_SUM_TOL` of the output's scale (measured: ~1e-13 on 100,000 candles).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from marketdata import indicators as ind

N = 100_000
ULPS = 4
EPS = np.finfo(np.float64).eps
RUNNING_SUM_TOL = 1e-11


def assert_same_to_double_precision(
    windowed: np.ndarray, whole: np.ndarray, what: str, exact: bool = True
) -> None:
    assert np.array_equal(np.isnan(windowed), np.isnan(whole)), what
    scale = float(np.nanmax(np.abs(whole))) if np.isfinite(whole).any() else 0.0
    tol = ULPS * EPS if exact else RUNNING_SUM_TOL
    np.testing.assert_allclose(windowed, whole, rtol=0, atol=tol * scale, err_msg=what)
    if exact:
        differ = np.count_nonzero((windowed != whole) & ~np.isnan(whole))
        assert differ <= max(1, len(whole) // 10_000), f"{what}: {differ} values not bit for bit"


def _long_series(seed: int, n: int = N):
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + rng.uniform(0, 0.01, n))
    low = close * (1 - rng.uniform(0, 0.01, n))
    return {"high": high, "low": low, "close": close}


CASES = [(name, {p.name: p.default for p in spec.params}) for name, spec in ind.HOUSE.items()] + [
    ("sma", {"period": 1000}),
    ("ema", {"period": 2}),
    ("ema", {"period": 1000}),
    ("rsi", {"period": 2}),
    ("rsi", {"period": 3}),
    ("rsi", {"period": 200}),
    ("rsi", {"period": 1000}),
    ("macd", {"fast": 5, "slow": 35, "signal": 5}),
    ("macd", {"fast": 1000, "slow": 2, "signal": 1000}),
    ("macd", {"fast": 3, "slow": 10, "signal": 1}),
    ("bbands", {"period": 1000, "stddev": 3.5}),
    ("atr", {"period": 1}),
    ("atr", {"period": 1000}),
    ("volatility", {"period": 2}),
    ("volatility", {"period": 1000}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda v: str(v))
def test_windowed_values_equal_whole_series_values(name, params):
    series = _long_series(zlib.crc32(f"{name}{params}".encode()))
    whole = ind.compute(name, params=params, timeframe="1h", series=series)
    warm = ind.warmup(name, params)
    assert warm < N // 2
    rng = np.random.default_rng(7)
    for first in [warm, warm + 1, *rng.integers(warm, N - 10, 8).tolist(), N - 1]:
        cut = {key: values[first - warm :] for key, values in series.items()}
        windowed = ind.compute(name, params=params, timeframe="1h", series=cut)
        for key in ind.INDICATORS[name].outputs:
            assert_same_to_double_precision(
                windowed[key][warm:],
                whole[key][first:],
                f"{key} @ {first}",
                ind.INDICATORS[name].full_history,
            )


def test_a_shorter_warm_up_would_not_do_for_the_ema_type_indicators():
    """The test above can fail: a window with only the lookback differs from the whole series."""
    series = _long_series(3)
    for name in ("ema", "rsi", "macd", "atr"):
        params = {p.name: p.default for p in ind.INDICATORS[name].params}
        whole = ind.compute(name, params=params, timeframe="1h", series=series)
        short = ind.INDICATORS[name].lookback(params)
        first = 20_000
        cut = {key: values[first - short :] for key, values in series.items()}
        windowed = ind.compute(name, params=params, timeframe="1h", series=cut)
        key = ind.INDICATORS[name].outputs[0]
        with pytest.raises(AssertionError):
            assert_same_to_double_precision(windowed[key][short:], whole[key][first:], name)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("sma", {"period": 20}, 19),
        ("ema", {"period": 20}, 19 + 416),
        ("rsi", {"period": 14}, 14 + 562),
        ("macd", {"fast": 12, "slow": 26, "signal": 9}, 33 + 541 + 187),
        ("bbands", {"period": 20, "stddev": 2.0}, 19),
        ("atr", {"period": 14}, 14 + 562),
        ("volatility", {"period": 30}, 30),
    ],
)
def test_warm_up_of_the_default_parameters_is_the_documented_one(name, params, expected):
    from tests.conftest import REPO_ROOT

    assert ind.warmup(name, params) == expected
    rows = [
        r
        for r in (REPO_ROOT / "docs" / "indicators.md").read_text().splitlines()
        if r.startswith(f"| `{name}` |")
    ]
    assert len(rows) == 1 and rows[0].rstrip().endswith(f"({expected}) |"), rows
