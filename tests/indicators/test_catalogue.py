"""The TA-Lib catalogue (marketdata.indicators.CATALOGUE), every offered function: equal to TA-Lib
called directly, scale-free for tiny prices, no look-ahead, first value at TA-Lib's lookback, pages
(the warm-up read) equal to the whole series, parameters as TA-Lib declares them."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from talib import abstract

from marketdata import indicators as ind

NAMES = sorted(ind.CATALOGUE)


def ohlc(seed: int, n: int, scale: float = 100.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    opn = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.02, n))
    return {"open": opn, "high": high, "low": low, "close": close}


def talib_direct(name: str, series: dict, params: dict) -> list[np.ndarray]:
    spec = ind.CATALOGUE[name]
    ta_params = {("timeperiod" if k == "period" else k): v for k, v in params.items()}
    out = abstract.Function(spec.talib_name)(series, **ta_params)
    return [np.asarray(o, dtype=np.float64) for o in (out if isinstance(out, list) else [out])]


def close_enough(ours: np.ndarray, ref: np.ndarray, what: str, rtol: float = 1e-9) -> None:
    mask = np.isfinite(ref)
    assert np.array_equal(mask, np.isfinite(ours)), f"{what}: warm-up/NaN positions differ"
    scale = float(np.max(np.abs(ref[mask]))) if mask.any() else 0.0
    np.testing.assert_allclose(ours[mask], ref[mask], rtol=rtol, atol=rtol * scale, err_msg=what)


def other_params(name: str) -> dict:
    """Defaults with every numeric range parameter moved inside its range (a second parameter set)."""
    out = ind.defaults(name)
    for p in ind.CATALOGUE[name].params:
        if p.choices:
            out[p.name] = p.choices[min(1, len(p.choices) - 1)][0]
        elif p.integer:
            out[p.name] = int(min(p.maximum, max(p.minimum, int(p.default) + 3)))
        elif p.maximum - p.minimum < 1e6:
            out[p.name] = float(p.minimum + (p.maximum - p.minimum) * 0.37)
    return out


def test_the_catalogue_covers_the_price_groups_and_names_what_it_leaves_out():
    groups = talib.get_function_groups()
    for group in ind.GROUPS:
        for function in groups[group]:
            offered = function.lower() in ind.INDICATORS and ind.INDICATORS[function.lower()].talib_name in (
                function,
                "",
            )
            assert offered or function in ind.EXCLUDED, function
    for function in groups["Volume Indicators"]:
        assert function.lower() not in ind.INDICATORS and "volume" in ind.EXCLUDED[function]
    assert "mfi" not in ind.INDICATORS and "vwma" not in ind.INDICATORS  # volume inputs, outside that group
    assert len(ind.CATALOGUE) > 120


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_talib_s_own(name):
    spec = ind.CATALOGUE[name]
    info = abstract.Function(spec.talib_name).info
    assert [p.name for p in spec.params] == [
        ("period" if k == "timeperiod" else k) for k in info["parameters"]
    ]
    for p, default in zip(spec.params, info["parameters"].values(), strict=True):
        assert p.default == default
        assert p.minimum <= p.default <= p.maximum
        if p.integer and not p.choices:
            assert p.maximum <= ind.MAX_PERIOD


@pytest.mark.parametrize("name", NAMES)
def test_values_equal_talib_called_directly(name):
    spec = ind.CATALOGUE[name]
    for seed, params in ((1, ind.defaults(name)), (2, other_params(name))):
        series = ohlc(seed, 700)
        ours = ind.compute(name, params=params, timeframe="1h", series=series)
        ref = talib_direct(name, series, params)
        lookback = spec.lookback(params)
        for key, expected in zip(spec.outputs, ref, strict=True):
            if ours[key].dtype == expected.dtype and np.isnan(ours[key][:lookback]).all():
                expected = expected.copy()
                expected[:lookback] = np.nan  # integer outputs (patterns) read 0 during TA-Lib's warm-up
            close_enough(ours[key], expected, f"{name}.{key} {params}")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_prices_give_the_values_of_the_same_series_priced_normally(name):
    spec = ind.CATALOGUE[name]
    params = ind.defaults(name)
    series = ohlc(3, 600)
    normal = ind.compute(name, params=params, timeframe="1h", series=series)
    for factor in (1e-9, 1e-12):
        tiny = ind.compute(
            name, params=params, timeframe="1h", series={k: v * factor for k, v in series.items()}
        )
        for key, unit in zip(spec.outputs, spec.units, strict=True):
            close_enough(tiny[key] / factor**unit, normal[key], f"{name}.{key} x{factor}")


@pytest.mark.parametrize("name", NAMES)
def test_a_value_uses_no_later_candle_and_starts_at_the_lookback(name):
    spec = ind.CATALOGUE[name]
    params = ind.defaults(name)
    series = ohlc(4, 500)
    full = ind.compute(name, params=params, timeframe="1h", series=series)
    part = ind.compute(name, params=params, timeframe="1h", series={k: v[:321] for k, v in series.items()})
    for key in spec.outputs:
        np.testing.assert_array_equal(full[key][:321], part[key])
    lookback = spec.lookback(params)
    assert all(np.isnan(full[key][:lookback]).all() for key in spec.outputs)
    assert any(not np.isnan(full[key][lookback]) for key in spec.outputs)


@pytest.mark.parametrize("name", NAMES)
def test_a_page_read_with_its_warm_up_equals_the_whole_series(name):
    """What the API reads (warmup(name, params) candles before the first value) gives the values of
    the whole series: to double precision for the recursive functions, and to TA-Lib's running-sum
    rounding (~1e-12 of the output's scale) for all."""
    spec = ind.CATALOGUE[name]
    for params in (ind.defaults(name), other_params(name)):
        warm = ind.warmup(name, params)
        n = warm + 1500
        series = ohlc(5, n, scale=30_000.0)
        whole = ind.compute(name, params=params, timeframe="1h", series=series)
        for first in (warm, warm + 700, n - 1):
            page = ind.compute(
                name, params=params, timeframe="1h", series={k: v[first - warm :] for k, v in series.items()}
            )
            for key in spec.outputs:
                close_enough(
                    page[key][warm:], whole[key][first:], f"{name}.{key} {params} @{first}", rtol=1e-10
                )


@pytest.mark.parametrize("name", [n for n in NAMES if ind.CATALOGUE[n].memory(ind.defaults(n))])
def test_the_lookback_alone_would_not_do_for_the_recursive_ones(name):
    """The memory term of the warm-up is needed: a read of only the lookback differs."""
    spec = ind.CATALOGUE[name]
    params = ind.defaults(name)
    lookback, warm = spec.lookback(params), ind.warmup(name, params)
    series = ohlc(6, warm + 1000, scale=30_000.0)
    whole = ind.compute(name, params=params, timeframe="1h", series=series)
    first = warm + 500
    short = ind.compute(
        name, params=params, timeframe="1h", series={k: v[first - lookback :] for k, v in series.items()}
    )
    differs = False
    for key in spec.outputs:
        a, b = short[key][lookback:], whole[key][first:]
        scale = np.nanmax(np.abs(b)) or 1.0
        differs |= bool(np.nanmax(np.abs(a - b)) > 1e-9 * scale)
    assert differs


def test_docs_list_every_offered_function_and_every_one_left_out():
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "docs" / "indicators.md").read_text()
    for name in ind.CATALOGUE:
        assert f"| `{name}` |" in text, name
    for name in ind.EXCLUDED:
        assert f"| {name} |" in text, name


@pytest.mark.parametrize("name", NAMES + list(ind.HOUSE))
def test_values_at_positions_are_those_of_the_whole_read(name):
    """compute_at (the API's page) gives the whole read's values; windowed ones from their own window
    only, so that a value does not depend on where the read started, even in its last digit."""
    params = ind.defaults(name)
    series = ohlc(8, 900)
    whole = ind.compute(name, params=params, timeframe="1h", series=series)
    positions = np.array([0, 5, 120, 450, 899])
    at = ind.compute_at(name, params=params, timeframe="1h", series=series, positions=positions)
    shifted = ind.compute_at(
        name,
        params=params,
        timeframe="1h",
        series={k: v[50:] for k, v in series.items()},
        positions=positions[3:] - 50,
    )
    for key in ind.INDICATORS[name].outputs:
        close_enough(at[key], whole[key][positions], f"{name}.{key}", rtol=1e-10)
        spec = ind.INDICATORS[name]
        if not spec.full_history and not spec.memory(params):
            np.testing.assert_array_equal(shifted[key], at[key][3:])
