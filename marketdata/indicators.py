"""Technical indicators, computed by TA-Lib's C functions (the ``ta-lib`` package, ``import talib``).

Every indicator takes 1-D float arrays ordered oldest → newest (one element per stored candle:
"open", "high", "low", "close") and returns float arrays of the same length; warm-up positions
(where TA-Lib outputs nothing) are NaN, never invented values. docs/indicators.md has the catalogue,
the formulas of the house indicators and the warm-up rules.

:data:`INDICATORS` holds two kinds:

- the seven **house indicators** (``sma``, ``ema``, ``rsi``, ``macd``, ``bbands``, ``atr``,
  ``volatility``) with the parameter names, defaults and outputs the API has always had; all but
  ``volatility`` are TA-Lib functions, ``volatility`` (annualised sample standard deviation of log
  returns) is built from TA-Lib's ``VAR`` and ``SUM``;
- the **catalogue**: every TA-Lib function that applies to one coin's price/OHLC candles (groups
  momentum, overlap studies, volatility, cycle, pattern recognition, price transform, statistics),
  named by its lower-case TA-Lib name, with parameters (names, types, defaults, ranges, MA-type
  lists) read from TA-Lib's own metadata (``talib.abstract`` and the C library's parameter info),
  never written by hand. :data:`EXCLUDED` names what is left out and why (volume-based functions:
  CoinGecko gives a rolling 24 h volume, not per-candle volume).

**Tiny prices.** Where a TA-Lib function compares a price-valued intermediate with an absolute
epsilon (older TA-Lib C did so in RSI, STDDEV, ADX...; the C library of ``ta-lib`` 0.8 still does
in PPO), a coin priced around 1e-9 would get a wrong value. For each function we measure at import
whether that happens (:func:`_epsilon_bites`: the function on a series priced ~1e-16 against the
same series priced ~100) and, where it does (``scaled``), multiply the series by a power of two
``2^k`` that brings its price to about ``2^40`` before TA-Lib sees it, and divide the outputs
measured in price units by ``2^k`` again (``2^2k`` for price², e.g. ``var``). Multiplying by a power
of two is exact in binary floating point, so the results are bit for bit those of TA-Lib on the raw
series wherever the epsilon does not bite, whichever ``k`` is used (a windowed read may pick another
``k``), and a tiny-priced coin gets the values of the same series priced normally. The unit of each
output (price, price², none) is measured at import as well (:func:`_measure_units`: the function on a
series and on the same series times 256); functions where the epsilon does not bite get the series
as it is (the same result, without the cost).

**Warm-up** (:func:`warmup`): the candles a value needs before it, so that the API reads only the
page asked for plus that many candles (``marketdata.selectors.series_window``): TA-Lib's lookback for
the parameters (``talib.abstract``'s ``lookback``), plus, for the recursive functions (an EMA, a
Wilder average, KAMA..., whose values depend in theory on every candle since the series start), the
candles after which the weight left on their seed is below :data:`SEED_WEIGHT` (2^-60, under a
double's 2^-53 resolution): :func:`fade`, with ``depth`` for cascaded smoothings (DEMA, TEMA, T3,
ADX...). Values then equal the whole-series values to double precision (tests/indicators/
test_windowed.py: TA-Lib's running sums — SMA, standard deviations — make pages differ from the
whole series in the last few binary digits, never more).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import talib
from talib.abstract import Function as TalibFunction  # type: ignore[attr-defined]  # not in its stub

# --- scaling (TA-Lib's absolute epsilon) ---------------------------------------------------------

#: Series are scaled by 2^k so that their reference price is at least 2^SCALE_EXPONENT (~1.1e12).
SCALE_EXPONENT = 40


def scale_exponent(close: np.ndarray) -> int:
    """``k`` for a series: its last finite non-zero |close| times 2^k is >= 2^SCALE_EXPONENT (0 when
    the price is already that large or the series has no such close)."""
    ref = float(close[-1]) if len(close) else 0.0
    if ref == 0.0 or not math.isfinite(ref):
        finite = np.abs(close[np.isfinite(close)])
        ref = float(finite.max()) if len(finite) else 0.0
        if ref == 0.0:
            return 0
    return max(0, SCALE_EXPONENT - math.frexp(abs(ref))[1])


@functools.cache
def periods_per_year(timeframe: str) -> float:
    """Buckets per 365-day year of a timeframe named ``<n><m|h|d|w>`` (crypto never closes)."""
    match = re.fullmatch(r"(\d+)([mhdw])", timeframe)
    if match is None:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    minutes = int(match[1]) * {"m": 1, "h": 60, "d": 1440, "w": 10080}[match[2]]
    return 365 * 1440 / minutes


def _c(name: str) -> Callable[..., Any]:
    """TA-Lib's function ``name`` as its Cython entry point: ``talib.X`` wraps it (functools.wraps)
    to accept pandas/polars series, which costs more than the C call on short series."""
    return inspect.unwrap(getattr(talib, name))


_SMA, _EMA, _RSI, _MACD, _BBANDS, _ATR, _STDDEV, _SUM = (
    _c(n) for n in ("SMA", "EMA", "RSI", "MACD", "BBANDS", "ATR", "STDDEV", "SUM")
)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


# --- warm-up: the fade rule ------------------------------------------------------------------------

#: Weight the seed of an EMA-type recursion may keep after the warm-up: below a double's resolution.
SEED_WEIGHT = 2.0**-60


def fade(alpha: float, depth: int = 1) -> int:
    """Candles after which a cascade of ``depth`` recursions ``y_t = y_{t-1} + alpha·(x_t - y_{t-1})``
    keeps less than :data:`SEED_WEIGHT` of its seeds: the smallest ``n`` with
    ``C(n+depth-1, depth-1)·(1 - alpha)^n <= SEED_WEIGHT`` (``depth = 1``: ``(1-alpha)^n``)."""
    if alpha >= 1.0:
        return 0
    target, rate = math.log(SEED_WEIGHT), math.log1p(-alpha)
    n = math.ceil(target / rate)
    if depth == 1:
        return n

    def log_weight(m: int) -> float:
        return math.lgamma(m + depth) - math.lgamma(m + 1) - math.lgamma(depth) + m * rate

    while log_weight(n) > target:
        n += max(1, n // 64)
    return n


def _ema_alpha(period: int) -> float:
    return 2.0 / (period + 1)


#: MA types (TA-Lib's ``matype``) offered where a function takes one, and the memory of each.
MA_TYPES: dict[int, str] = {0: "SMA", 1: "EMA", 2: "WMA", 3: "DEMA", 4: "TEMA", 5: "TRIMA", 6: "KAMA",
                            8: "T3", 9: "HMA", 12: "ZLEMA", 13: "RMA"}  # fmt: skip
#: KAMA's slowest smoothing constant: (2/(30+1))^2, whatever its period.
_KAMA_SLOWEST = (2.0 / 31) ** 2


def ma_memory(matype: int, period: int) -> int:
    """The fade of one moving average of TA-Lib's ``matype`` (0 for the windowed ones)."""
    if period <= 1:
        return 0
    kind = MA_TYPES[matype]
    if kind in ("EMA", "ZLEMA"):
        return fade(_ema_alpha(period))
    if kind in ("DEMA", "TEMA", "T3"):
        return fade(_ema_alpha(period), {"DEMA": 2, "TEMA": 3, "T3": 6}[kind])
    if kind == "RMA":
        return fade(1.0 / period)
    if kind == "KAMA":
        return fade(_KAMA_SLOWEST)
    return 0


# --- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    minimum: float
    maximum: float
    integer: bool = True
    description: str = ""
    #: Allowed values when the parameter is a list (TA-Lib's MA types): value → label.
    choices: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Indicator:
    name: str
    title: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    #: True when a value depends on all history since the series start (EMA-type).
    full_history: bool
    #: Candles before the first value (given the parameters): TA-Lib's lookback.
    lookback: Callable[[dict], int]
    #: ``compute(inputs, params, timeframe)`` → output arrays (inputs scaled by 2^k).
    compute: Callable[[dict[str, np.ndarray], dict, str], tuple[np.ndarray, ...]]
    inputs: tuple[str, ...] = ("close",)
    formula: str = ""
    #: Unit power of each output: 1 price, 2 price², 0 none (outputs divided by 2^(k·power)).
    units: tuple[int, ...] = (1,)
    #: EMA-type only: further candles for the seeds' weight to fade below SEED_WEIGHT.
    memory: Callable[[dict], int] = lambda p: 0
    #: TA-Lib group ("House" for volatility) and function name.
    group: str = ""
    talib_name: str = ""
    #: False when no absolute epsilon of TA-Lib's can bite (the values are exactly proportional to
    #: the price at any scale): the series is passed as it is (the same result, without the cost).
    scaled: bool = True


def warmup(name: str, params: dict) -> int:
    """Candles to read before the first value asked for, so that the values equal those computed
    over the whole stored series: the lookback, plus (EMA-type) the seeds' fading time."""
    spec = INDICATORS[name]
    return spec.lookback(params) + spec.memory(params)


def defaults(name: str) -> dict[str, Any]:
    """The default parameters of an indicator (ints for integer parameters)."""
    return {p.name: int(p.default) if p.integer else p.default for p in INDICATORS[name].params}


def compute(
    name: str, *, params: dict, timeframe: str, series: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Compute indicator ``name`` over ``series`` (arrays keyed "open", "high", "low", "close")."""
    return compute_many([(name, params)], timeframe=timeframe, series=series)[0]


def compute_many(
    requests: list[tuple[str, dict]], *, timeframe: str, series: dict[str, np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Compute several indicators over one series (scaled once): one dict of outputs per request."""
    close = np.ascontiguousarray(series["close"], dtype=np.float64)
    n = len(close)
    k = -1  # the scale exponent, computed when a function that needs scaling comes (most do not)
    factor = 1.0
    raw: dict[str, np.ndarray] = {"close": close}
    scaled: dict[str, np.ndarray] = {}
    results = []
    for name, params in requests:
        spec = INDICATORS[name]
        if n == 0:
            results.append({o: _nan(0) for o in spec.outputs})
            continue
        for key in spec.inputs:
            if key not in raw:
                raw[key] = np.ascontiguousarray(series[key], dtype=np.float64)
        if spec.scaled:
            if k < 0:
                k = scale_exponent(close)
                factor = math.ldexp(1.0, k)
            for key in spec.inputs:
                if key not in scaled:
                    scaled[key] = raw[key] * factor if k else raw[key]
        values = spec.compute(scaled if spec.scaled else raw, params, timeframe)
        if k > 0 and spec.scaled:
            for value, unit in zip(values, spec.units, strict=True):
                if unit:
                    value *= math.ldexp(1.0, -k * unit)  # exact: a power of two
        results.append(dict(zip(spec.outputs, values, strict=True)))
    return results


def compute_at(
    name: str, *, params: dict, timeframe: str, series: dict[str, np.ndarray], positions: np.ndarray
) -> dict[str, np.ndarray]:
    """The values of indicator ``name`` at ``positions`` of ``series`` only — what an API page needs.

    A windowed function (no memory) computes each value from exactly its own window (the lookback
    candles before it): TA-Lib's running sums would otherwise make a value depend, in its last binary
    digits, on where the read started, and a page must give the very numbers of one big request. A
    recursive one is computed over the whole read (its warm-up) and picked."""
    spec = INDICATORS[name]
    if spec.full_history or spec.memory(params) or not len(positions):
        whole = compute(name, params=params, timeframe=timeframe, series=series)
        return {key: values[positions] for key, values in whole.items()}
    lookback = spec.lookback(params)
    out = {key: _nan(len(positions)) for key in spec.outputs}
    for j, i in enumerate(positions.tolist()):
        if i < lookback:
            continue
        window = {key: series[key][i - lookback : i + 1] for key in {"close", *spec.inputs}}
        for key, values in compute(name, params=params, timeframe=timeframe, series=window).items():
            out[key][j] = values[-1]
    return out


def _period(default: int, minimum: int = 2, maximum: int = 1000, what: str = "Number of candles.") -> Param:
    return Param("period", default, minimum, maximum, True, what)


def _volatility(inputs: dict[str, np.ndarray], params: dict, timeframe: str) -> tuple[np.ndarray, ...]:
    close, period = inputs["close"], params["period"]
    n = len(close)
    if period < 2 or n <= period:
        return (_nan(n),)
    # log returns aligned with the candles (index 0 has none: TA-Lib starts after leading NaNs)
    returns = np.empty(n)
    returns[0] = np.nan
    tail = returns[1:]
    # TA-Lib's STDDEV is the population one: times sqrt(p/(p-1)) for the sample one, and annualised
    nbdev = math.sqrt(periods_per_year(timeframe) * period / (period - 1))
    if (close > 0).all():
        np.divide(close[1:], close[:-1], out=tail)  # the 2^k scale cancels in the ratio
        np.log(tail, out=tail)
        return (_STDDEV(returns, period, nbdev),)
    # a window touching a missing return (a close that is not positive) has no value
    finite = (close[1:] > 0) & (close[:-1] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(close[1:], close[:-1], out=tail)
        np.log(tail, out=tail)
    tail[~finite] = 0.0
    out = _STDDEV(returns, period, nbdev)
    missing = np.empty(n)
    missing[0] = np.nan
    missing[1:] = ~finite
    out[_SUM(missing, period) > 0] = np.nan
    return (out,)


HOUSE: dict[str, Indicator] = {
    "sma": Indicator(
        "sma",
        "Simple moving average",
        (_period(20),),
        ("value",),
        False,
        lambda p: p["period"] - 1,
        lambda s, p, tf: (_SMA(s["close"], p["period"]),),
        formula="mean(close[t-period+1..t])",
        group="Overlap Studies",
        talib_name="SMA",
    ),
    "ema": Indicator(
        "ema",
        "Exponential moving average",
        (_period(20),),
        ("value",),
        True,
        lambda p: p["period"] - 1,
        lambda s, p, tf: (_EMA(s["close"], p["period"]),),
        formula="k=2/(period+1); seed=SMA(first period closes); ema_t=ema_{t-1}+k*(close_t-ema_{t-1})",
        memory=lambda p: fade(_ema_alpha(p["period"])),
        group="Overlap Studies",
        talib_name="EMA",
    ),
    "rsi": Indicator(
        "rsi",
        "Relative strength index (Wilder)",
        (_period(14),),
        ("value",),
        True,
        lambda p: p["period"],
        lambda s, p, tf: (_RSI(s["close"], p["period"]),),
        formula="100*G/(G+L), G/L Wilder-smoothed average gain/loss seeded by their simple mean",
        units=(0,),
        memory=lambda p: fade(1.0 / p["period"]),
        group="Momentum Indicators",
        talib_name="RSI",
    ),
    "macd": Indicator(
        "macd",
        "Moving average convergence/divergence",
        (
            Param("fast", 12, 2, 1000, True, "Fast EMA period."),
            Param("slow", 26, 2, 1000, True, "Slow EMA period."),
            Param("signal", 9, 1, 1000, True, "Signal EMA period."),
        ),
        ("macd", "signal", "histogram"),
        True,
        lambda p: max(p["fast"], p["slow"]) + p["signal"] - 2,
        lambda s, p, tf: _MACD(s["close"], p["fast"], p["slow"], p["signal"]),
        formula="macd=EMA(fast)-EMA(slow); signal=EMA(signal) of macd; histogram=macd-signal",
        units=(1, 1, 1),
        # the slower of the two price EMAs fades last; the signal EMA's own seed after it
        memory=lambda p: fade(_ema_alpha(max(p["fast"], p["slow"]))) + fade(_ema_alpha(p["signal"])),
        group="Momentum Indicators",
        talib_name="MACD",
    ),
    "bbands": Indicator(
        "bbands",
        "Bollinger bands",
        (_period(20), Param("stddev", 2.0, 0.1, 10.0, False, "Band width in standard deviations.")),
        ("upper", "middle", "lower"),
        False,
        lambda p: p["period"] - 1,
        lambda s, p, tf: _BBANDS(s["close"], p["period"], p["stddev"], p["stddev"], 0),
        formula="middle=SMA(period); upper/lower=middle±stddev*sigma (population sigma of the same closes)",
        units=(1, 1, 1),
        group="Overlap Studies",
        talib_name="BBANDS",
    ),
    "atr": Indicator(
        "atr",
        "Average true range (Wilder)",
        (_period(14, minimum=1),),
        ("value",),
        True,
        lambda p: p["period"],
        lambda s, p, tf: (_ATR(s["high"], s["low"], s["close"], p["period"]),),
        inputs=("high", "low", "close"),
        formula="TR=max(h-l,|h-c_prev|,|l-c_prev|); ATR seeded by mean(TR_1..TR_p), then Wilder",
        memory=lambda p: fade(1.0 / p["period"]),
        group="Volatility Indicators",
        talib_name="ATR",
    ),
    "volatility": Indicator(
        "volatility",
        "Annualised volatility of log returns",
        (_period(30),),
        ("value",),
        False,
        lambda p: p["period"],
        _volatility,
        formula="stdev_{n-1}(ln(close_t/close_{t-1}) over period) * sqrt(buckets per 365-day year)",
        units=(0,),
        group="House",
    ),
}


def _house_measured(spec: Indicator) -> Indicator:
    """``spec`` with ``scaled`` measured (:func:`_epsilon_bites`) rather than assumed."""
    params = {p.name: int(p.default) if p.integer else p.default for p in spec.params}

    def call(series: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(spec.compute(series, params, "1h"))

    return dataclasses.replace(spec, scaled=_epsilon_bites(call, spec.units))


# --- the TA-Lib catalogue --------------------------------------------------------------------------

#: TA-Lib groups offered (Math Operators/Transform are array arithmetic, Volume needs volume).
GROUPS = (
    "Momentum Indicators",
    "Overlap Studies",
    "Volatility Indicators",
    "Cycle Indicators",
    "Pattern Recognition",
    "Price Transform",
    "Statistic Functions",
)
_OHLC = ("open", "high", "low", "close")
#: Periods beyond this are refused: the warm-up read grows with the period (docs/indicators.md).
MAX_PERIOD = 1000
#: Parameter names renamed for the API (the house's name of the window length).
_RENAME = {"timeperiod": "period"}

#: Ehlers' Hilbert-transform loop (HT_*, MAMA) adapts its own period from its past output: measured,
#: its start-up error decays like a cascade of two 0.1 smoothings (tests/indicators/test_catalogue.py).
_HT_MEMORY = fade(0.1, 2)


def _slow_kd_memory(p: dict) -> int:
    """STOCH/KDJ: the slow-K average, then the slow-D average of it."""
    return ma_memory(p["slowk_matype"], p["slowk_period"]) + ma_memory(p["slowd_matype"], p["slowd_period"])


#: Memory (candles beyond the lookback) of the recursive catalogue functions, from their parameters
#: (API names). Every other offered function is windowed: tests/indicators/test_windowed.py checks
#: both (a recursive function missing here fails it).
_MEMORY: dict[str, Callable[[dict], int]] = {
    "DEMA": lambda p: ma_memory(3, p["period"]),
    "TEMA": lambda p: ma_memory(4, p["period"]),
    "T3": lambda p: ma_memory(8, p["period"]),
    "TRIX": lambda p: ma_memory(4, p["period"]),
    "KAMA": lambda p: ma_memory(6, p["period"]),
    "ZLEMA": lambda p: ma_memory(12, p["period"]),
    "RMA": lambda p: ma_memory(13, p["period"]),
    "MA": lambda p: ma_memory(p["matype"], p["period"]),
    "MACDEXT": lambda p: max(
        ma_memory(p["fastmatype"], p["fastperiod"]), ma_memory(p["slowmatype"], p["slowperiod"])
    )
    + ma_memory(p["signalmatype"], p["signalperiod"]),
    "MACDFIX": lambda p: fade(0.075) + ma_memory(1, p["signalperiod"]),
    "APO": lambda p: max(ma_memory(p["matype"], p["fastperiod"]), ma_memory(p["matype"], p["slowperiod"])),
    "PPO": lambda p: max(ma_memory(p["matype"], p["fastperiod"]), ma_memory(p["matype"], p["slowperiod"])),
    "STOCH": lambda p: _slow_kd_memory(p),
    "KDJ": lambda p: _slow_kd_memory(p),
    "STOCHF": lambda p: ma_memory(p["fastd_matype"], p["fastd_period"]),
    "STOCHRSI": lambda p: fade(1.0 / p["period"]) + ma_memory(p["fastd_matype"], p["fastd_period"]),
    "ADX": lambda p: fade(1.0 / p["period"], 2),
    "ADXR": lambda p: fade(1.0 / p["period"], 2),
    "DX": lambda p: fade(1.0 / p["period"]),
    "PLUS_DI": lambda p: fade(1.0 / p["period"]),
    "MINUS_DI": lambda p: fade(1.0 / p["period"]),
    "PLUS_DM": lambda p: fade(1.0 / p["period"]),
    "MINUS_DM": lambda p: fade(1.0 / p["period"]),
    "CMO": lambda p: fade(1.0 / p["period"]),
    "NATR": lambda p: fade(1.0 / p["period"]),
    "HA": lambda p: fade(0.5),
    "TSI": lambda p: fade(_ema_alpha(p["firstperiod"])) + fade(_ema_alpha(p["secondperiod"])),
    "SMI": lambda p: sum(fade(_ema_alpha(p[k])) for k in ("fastperiod", "slowperiod", "signalperiod")),
    "KC": lambda p: max(fade(_ema_alpha(p["period"])), fade(1.0 / p["atrperiod"])),
    "ERI": lambda p: fade(_ema_alpha(p["period"])),
    "MASSI": lambda p: fade(_ema_alpha(p["fastperiod"]), 2),
    "CVI": lambda p: fade(_ema_alpha(p["period"])),
    "RVI": lambda p: fade(1.0 / p["period"]) + fade(_ema_alpha(p["period"])),
    "HT_DCPERIOD": lambda p: _HT_MEMORY,
    "HT_DCPHASE": lambda p: _HT_MEMORY,
    "HT_PHASOR": lambda p: _HT_MEMORY,
    "HT_SINE": lambda p: _HT_MEMORY,
    "HT_TRENDMODE": lambda p: _HT_MEMORY,
    "HT_TRENDLINE": lambda p: _HT_MEMORY,
    # MAMA adapts its factor between slowlimit and fastlimit (FAMA: half of it) from a Hilbert phase
    "MAMA": lambda p: _HT_MEMORY + fade(p["slowlimit"] / 2),
}  # fmt: skip

#: What the catalogue leaves out, and why (docs/indicators.md).
EXCLUDED: dict[str, str] = {}


def _excluded_reason(info: dict) -> str | None:
    inputs = info["input_names"]
    columns = [c for v in inputs.values() for c in (v if isinstance(v, list) else [v])]
    flags = info["function_flags"] or []
    if "volume" in columns:
        return "needs per-candle volume (CoinGecko gives only a rolling 24 h volume)"
    if any(key.startswith("price") and key[-1].isdigit() for key in inputs):
        return "compares two instruments (two price series)"
    if "periods" in inputs:
        return "needs a period per candle (an input series, not a parameter)"
    if not set(columns) <= set(_OHLC):
        return f"needs inputs other than OHLC: {', '.join(sorted(set(columns) - set(_OHLC)))}"
    if "d" in info["output_names"]:  # KDJ: k, d, j
        return (
            "an output named `d` breaks clients generated from the OpenAPI document (openapi-python-client "
            "names its parsing variable `d`); STOCH gives the same slow K and D (J = 3K - 2D)"
        )
    if "Output is path-dependent" in flags:
        return (
            "never forgets where the computation started (cumulative or regime state): "
            "no finite warm-up gives range-independent values"
        )
    return None  # fmt: skip


# TA-Lib's parameter metadata (ranges, MA-type lists) is in the C library; talib.abstract exposes
# names, types and defaults only. The library the talib extension links is bundled in the wheel.
_TA_REAL_RANGE, _TA_REAL_LIST, _TA_INTEGER_RANGE, _TA_INTEGER_LIST = 0, 1, 2, 3


class _OptInputInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("param_name", ctypes.c_char_p), ("flags", ctypes.c_int),
                ("display_name", ctypes.c_char_p), ("data_set", ctypes.c_void_p),
                ("default_value", ctypes.c_double), ("hint", ctypes.c_char_p),
                ("help_file", ctypes.c_char_p)]  # fmt: skip


class _IntegerRange(ctypes.Structure):
    _fields_ = [("min", ctypes.c_int), ("max", ctypes.c_int)]


class _RealRange(ctypes.Structure):
    _fields_ = [("min", ctypes.c_double), ("max", ctypes.c_double)]


class _IntegerPair(ctypes.Structure):
    _fields_ = [("value", ctypes.c_int), ("string", ctypes.c_char_p)]


class _IntegerList(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(_IntegerPair)), ("count", ctypes.c_uint)]


@functools.cache
def _talib_c() -> ctypes.CDLL:
    libs = sorted((Path(talib.__file__).parent.parent / "ta_lib.libs").glob("libta-lib*.so*"))
    if not libs:
        raise ImportError("TA-Lib's C library (ta_lib.libs/libta-lib*.so) not found beside talib")
    return ctypes.CDLL(str(libs[0]))


def _talib_params(name: str, count: int) -> list[dict]:
    """TA-Lib's own description of each optional input of ``name``: type, default, range or list."""
    lib = _talib_c()
    handle = ctypes.c_void_p()
    if lib.TA_GetFuncHandle(name.encode(), ctypes.byref(handle)) != 0:
        raise ImportError(f"TA-Lib has no function {name}")
    out = []
    for i in range(count):
        ptr = ctypes.POINTER(_OptInputInfo)()
        if lib.TA_GetOptInputParameterInfo(handle, i, ctypes.byref(ptr)) != 0:
            raise ImportError(f"TA-Lib: no parameter {i} of {name}")
        info = ptr.contents
        item: dict[str, Any] = {"type": info.type, "default": info.default_value,
                                "hint": (info.hint or b"").decode()}  # fmt: skip
        if info.type == _TA_INTEGER_RANGE:
            rng = ctypes.cast(info.data_set, ctypes.POINTER(_IntegerRange)).contents
            item["range"] = (rng.min, rng.max)
        elif info.type == _TA_REAL_RANGE:
            real = ctypes.cast(info.data_set, ctypes.POINTER(_RealRange)).contents
            item["range"] = (real.min, real.max)
        elif info.type == _TA_INTEGER_LIST:
            lst = ctypes.cast(info.data_set, ctypes.POINTER(_IntegerList)).contents
            item["choices"] = [(lst.data[j].value, lst.data[j].string.decode()) for j in range(lst.count)]
        out.append(item)
    return out


def _catalogue_params(name: str, info: dict) -> tuple[Param, ...]:
    params = []
    meta = _talib_params(name, len(info["parameters"]))
    for (ta_name, default), m in zip(info["parameters"].items(), meta, strict=True):
        api_name = _RENAME.get(ta_name, ta_name)
        if abs(m["default"] - default) > 1e-12:
            raise ImportError(f"TA-Lib metadata of {name}.{ta_name} disagrees with talib.abstract")
        if m["type"] == _TA_INTEGER_LIST:
            choices = tuple((v, label) for v, label in m["choices"] if v in MA_TYPES)
            labels = ", ".join(f"{v} {label}" for v, label in choices)
            values = [v for v, _ in choices]
            hint = f"{m['hint']}: {labels}."
            params.append(Param(api_name, int(default), min(values), max(values), True, hint, choices))
        elif m["type"] == _TA_INTEGER_RANGE:
            low, high = m["range"]
            params.append(Param(api_name, int(default), low, min(high, MAX_PERIOD), True, f"{m['hint']}."))
        elif m["type"] == _TA_REAL_RANGE:
            low, high = m["range"]
            params.append(Param(api_name, float(default), low, high, False, f"{m['hint']}."))
        else:
            raise ImportError(f"TA-Lib parameter type {m['type']} of {name}.{ta_name} not supported")
    return tuple(params)


def _probe_series(n: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261129)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    opn = close * np.exp(rng.normal(0, 0.01, n))
    return {"open": opn, "high": np.maximum(opn, close) * (1 + rng.uniform(0, 0.02, n)),
            "low": np.minimum(opn, close) * (1 - rng.uniform(0, 0.02, n)), "close": close}  # fmt: skip


def _measure_units(call: Callable[[dict], tuple[np.ndarray, ...]], count: int) -> tuple[int, ...] | None:
    """The unit power of each output (0 none, 1 price, 2 price²), measured on a series and the same
    series times 2^8; None when an output is neither (it depends on the price's unit)."""
    series = _probe_series()
    base = call(series)
    scaled = call({k: v * 256.0 for k, v in series.items()})
    powers = []
    for a, b in zip(base, scaled, strict=True):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        mask = np.isfinite(a) & (a != 0)
        power = 0
        if mask.any():
            ratio = b[mask] / a[mask]
            for candidate in (0, 1, 2):
                if np.allclose(ratio, 256.0**candidate, rtol=1e-9, atol=0):
                    power = candidate
                    break
            else:
                return None
        powers.append(power)
    return tuple(powers) if len(powers) == count else None


def _epsilon_bites(call: Callable[[dict], tuple[np.ndarray, ...]], units: tuple[int, ...]) -> bool:
    """Whether one of TA-Lib's absolute epsilons changes the outputs of a series priced ~1e-16 (the
    probe series times 2^-60): if not, the function is exactly proportional at any price and needs
    no scaling."""
    series = _probe_series()
    base = call(series)
    tiny = call({k: np.ldexp(v, -60) for k, v in series.items()})
    for a, b, unit in zip(base, tiny, units, strict=True):
        if not np.array_equal(
            np.asarray(a, dtype=np.float64),
            np.ldexp(np.asarray(b, dtype=np.float64), 60 * unit),
            equal_nan=True,
        ):
            return True
    return False  # fmt: skip


def _catalogue_entry(name: str, info: dict) -> Indicator | str:
    params = _catalogue_params(name, info)
    ta_names = list(info["parameters"])
    api_names = [p.name for p in params]
    inputs = tuple(c for v in info["input_names"].values() for c in (v if isinstance(v, list) else [v]))
    function = _c(name)
    outputs = tuple(info["output_names"])
    api_outputs = ("value",) if len(outputs) == 1 else outputs
    abstract_function = TalibFunction(name)

    @functools.lru_cache(maxsize=4096)
    def lookback_of(items: tuple) -> int:
        values = dict(items)
        # talib.abstract's lookback for these parameters (int/float as TA-Lib types them)
        abstract_function.set_parameters(
            {
                t: (int(values[a]) if p.integer else float(values[a]))
                for t, a, p in zip(ta_names, api_names, params, strict=True)
            }
        )  # fmt: skip
        return int(abstract_function.lookback)

    def call(series: dict[str, np.ndarray], params_: dict | None = None) -> tuple[np.ndarray, ...]:
        values = params_ or {p.name: p.default for p in params}
        result = function(*(series[c] for c in inputs), *(values[a] for a in api_names))
        result = tuple(result) if isinstance(result, (list, tuple)) else (result,)
        if all(r.dtype == np.float64 for r in result):
            return result
        # integer outputs (patterns, trend mode) are 0 during the warm-up: make that NaN, as elsewhere
        floats = tuple(np.asarray(r, dtype=np.float64) for r in result)
        skip = lookback_of(tuple(sorted(values.items())))
        for r in floats:
            r[:skip] = np.nan
        return floats

    units = _measure_units(call, len(outputs))
    if units is None:
        return "its value depends on the unit the price is quoted in (not scale-free)"
    scaled = _epsilon_bites(call, units)
    flags = info["function_flags"] or []
    memory = _MEMORY.get(name, lambda p: 0)
    return Indicator(
        name.lower(),
        info["display_name"],
        params,
        api_outputs,
        name in _MEMORY or "Function has an unstable period" in flags,
        lambda p: lookback_of(tuple(sorted(p.items()))),
        lambda s, p, tf: call(s, p),
        inputs=inputs,
        formula=f"TA-Lib {name}",
        units=units,
        memory=memory,
        group=info["group"],
        talib_name=name,
        scaled=scaled,
    )


def _catalogue() -> dict[str, Indicator]:
    out: dict[str, Indicator] = {}
    groups = talib.get_function_groups()
    for group in GROUPS:
        for name in groups[group]:
            if name.lower() in HOUSE:
                continue  # the house indicator of the same name (same TA-Lib function, house parameters)
            info = TalibFunction(name).info
            reason = _excluded_reason(info)
            entry = reason or _catalogue_entry(name, info)
            if isinstance(entry, str):
                EXCLUDED[name] = entry
            else:
                out[entry.name] = entry
    for group, names in groups.items():
        if group not in GROUPS:
            for name in names:
                EXCLUDED[name] = (
                    "needs per-candle volume (CoinGecko gives only a rolling 24 h volume)"
                    if group == "Volume Indicators"
                    else f"{group}: arithmetic on arrays, not an indicator of a price series"
                )
    return out


HOUSE = {name: _house_measured(spec) for name, spec in HOUSE.items()}
CATALOGUE: dict[str, Indicator] = _catalogue()
INDICATORS: dict[str, Indicator] = {**HOUSE, **CATALOGUE}
