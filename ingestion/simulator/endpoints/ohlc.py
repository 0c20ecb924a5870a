"""``/coins/{id}/ohlc`` and ``/coins/{id}/ohlc/range``: candles on the UTC grid stamped with their
close time (the still-open last one included unless configured off), with gap/spike/malformed faults."""

from __future__ import annotations

import numpy as np

from ..core import DAY_MS, HOUR_MS, MIN5_MS
from ..faults import F_GAP, F_MALFORMED, F_MALFORMED_KIND, F_SPIKE
from ..protocol import flat_error, num, parse_time, status_error
from ..state import SimState
from ..universe import DATA_START_MS
from ..walk import round_significant

OHLC_DAYS = ("1", "7", "14", "30", "90", "180", "365", "max")
PAID_ONLY = "This request is limited to paid plan subscribers."


def ohlc(state: SimState, i: int, params: dict, rate: float, now_ms: int) -> list:
    days_s = params.get("days")
    if days_s not in OHLC_DAYS:
        raise flat_error(400, "invalid days: must be one of 1, 7, 14, 30, 90, 180, 365, max")
    interval = params.get("interval") or ""
    if interval not in ("", "daily", "hourly"):
        raise flat_error(400, "invalid interval")
    if interval and state.config.plan == "demo":
        raise status_error(401, 10005, PAID_ONLY)
    listed = int(state.universe.listed_ms[i])
    days = None if days_s == "max" else int(days_s)
    from_ms = listed if days is None else now_ms - days * DAY_MS
    if interval == "daily":
        candle = DAY_MS
    elif interval == "hourly":
        candle = HOUR_MS
    elif days is not None and days <= 2:
        candle = 30 * 60_000
    elif days is not None and days <= 30:
        candle = 4 * HOUR_MS
    else:
        candle = 4 * DAY_MS
    starts = _candle_starts(state, max(from_ms, listed), now_ms, candle, now_ms)
    return _candles(state, i, starts, candle, rate, now_ms)


def ohlc_range(state: SimState, i: int, params: dict, rate: float, now_ms: int) -> list:
    if state.config.plan == "demo":
        raise status_error(401, 10005, PAID_ONLY)
    from_ms = parse_time(params.get("from"), "from")
    to_ms_ = parse_time(params.get("to"), "to")
    interval = params.get("interval")
    if interval not in ("daily", "hourly"):
        raise flat_error(400, "invalid interval: must be daily or hourly")
    candle = DAY_MS if interval == "daily" else HOUR_MS
    limit_days = 180 if interval == "daily" else 31
    if to_ms_ - from_ms > limit_days * DAY_MS:
        raise flat_error(
            400, f"The time range exceeds the maximum of {limit_days} days for interval={interval}"
        )
    start = max(from_ms, DATA_START_MS, int(state.universe.listed_ms[i]))
    return _candles(state, i, _candle_starts(state, start, to_ms_, candle, now_ms), candle, rate, now_ms)


def _candle_starts(state: SimState, from_ms: int, to_ms_: int, candle: int, now_ms: int) -> np.ndarray:
    first = (from_ms // candle) * candle
    if first + candle <= from_ms:
        first += candle
    last = min(to_ms_, now_ms)
    starts = np.arange(first, last, candle, dtype=np.int64)
    if not state.config.ohlc_include_partial:
        starts = starts[starts + candle <= now_ms]
    return starts


def _candles(state: SimState, i: int, starts: np.ndarray, candle_ms: int, rate: float, now_ms: int) -> list:
    sample = None
    if candle_ms >= 4 * DAY_MS:
        sample = HOUR_MS
    elif candle_ms >= DAY_MS:
        sample = MIN5_MS
    coin = state.universe.ids[i]
    bars = state.truth.ohlc(coin, starts, candle_ms, now_ms, sample)
    close_ms = bars["start_ms"] + candle_ms
    o, h, lo, c = (round_significant(bars[x] * rate, 8) for x in ("open", "high", "low", "close"))
    f = state.config.faults
    sec = close_ms // 1000
    idx = np.full(close_ms.shape, i)
    keep = np.ones(close_ms.shape, dtype=bool)
    if f.gap_rate and close_ms.size > 1:
        keep = state.record_u(idx, sec, F_GAP) >= f.gap_rate
        keep[-1] = True
    if f.spike_rate and close_ms.size:
        spikes = state.record_u(idx, sec, F_SPIKE) < f.spike_rate
        h = np.where(spikes, round_significant(h * f.spike_factor, 8), h)
        c = np.where(spikes, round_significant(c * f.spike_factor, 8), c)
    rows: list[list[float | int | str | None]] = []
    for j in range(close_ms.size):
        if not keep[j]:
            state.log_fault("gap", "/ohlc", coin, int(close_ms[j]))
            continue
        row: list[float | int | str | None] = [
            int(close_ms[j]),
            num(float(o[j])),
            num(float(h[j])),
            num(float(lo[j])),
            num(float(c[j])),
        ]
        if f.malformed_rate and state.record_u(i, int(sec[j]), F_MALFORMED) < f.malformed_rate:
            kind = int(state.record_u(i, int(sec[j]), F_MALFORMED_KIND) * 4)
            malformed: list[list[float | int | str | None]] = [
                row[:4],
                [row[0], None, row[2], row[3], row[4]],
                [row[0], row[1], float(lo[j]) * 0.5, row[3], row[4]],  # high below low
                [row[0], "NaN", row[2], row[3], row[4]],
            ]
            row = malformed[kind]
            state.log_fault(f"malformed_{kind}", "/ohlc", coin, int(close_ms[j]))
        rows.append(row)
    return rows
