"""``/coins/{id}/market_chart`` and ``/coins/{id}/market_chart/range``: price, market cap and volume
points on a 5-minute, hourly or daily grid (the last point is now), with gap/spike/malformed faults."""

from __future__ import annotations

import numpy as np

from ..core import DAY_MS, HOUR_MS, MIN5_MS
from ..faults import F_GAP, F_MALFORMED, F_MALFORMED_KIND, F_SPIKE
from ..protocol import flat_error, nested_error, num, parse_days, parse_time, status_error
from ..state import SimState
from ..universe import DATA_START_MS
from ..walk import round_significant

ENTERPRISE_ONLY = (
    "You may not have access to this endpoint. This request is limited to Enterprise plan subscribers."
)


def market_chart(state: SimState, i: int, params: dict, rate: float, now_ms: int) -> dict:
    days = parse_days(params.get("days"))
    listed = int(state.universe.listed_ms[i])
    from_ms = listed if days is None else now_ms - round(days * DAY_MS)
    _check_history(state, from_ms, now_ms)
    interval = params.get("interval") or ""
    if interval not in ("", "5m", "hourly", "daily"):
        raise flat_error(400, "invalid interval")
    if interval in ("5m", "hourly") and not state.config.enterprise:
        raise status_error(401, 10005, ENTERPRISE_ONLY)
    if interval == "daily" or (not interval and (days is None or days > 90)):
        step = DAY_MS
    elif interval == "hourly" or (not interval and days is not None and days > 1):
        step = HOUR_MS
    else:
        step = MIN5_MS
    return _chart_body(state, i, _grid(max(from_ms, listed), now_ms, step, now_ms), rate)


def market_chart_range(state: SimState, i: int, params: dict, rate: float, now_ms: int) -> dict:
    from_ms = parse_time(params.get("from"), "from")
    to_ms_ = parse_time(params.get("to"), "to")
    _check_history(state, from_ms, now_ms)
    interval = params.get("interval") or ""
    if interval in ("5m", "hourly") and not state.config.enterprise:
        raise status_error(401, 10005, ENTERPRISE_ONLY)
    span = to_ms_ - from_ms
    if to_ms_ < from_ms:
        return {"prices": [], "market_caps": [], "total_volumes": []}
    recent = to_ms_ >= now_ms - HOUR_MS
    if interval == "5m" or (not interval and span <= DAY_MS and (recent or state.config.range_5m_anytime)):
        step, floor_ms = MIN5_MS, DATA_START_MS
    elif interval == "hourly" or (not interval and span <= 90 * DAY_MS):
        step, floor_ms = HOUR_MS, DATA_START_MS
    else:
        step, floor_ms = DAY_MS, DATA_START_MS
    start = max(from_ms, floor_ms, int(state.universe.listed_ms[i]))
    return _chart_body(state, i, _grid(start, to_ms_, step, now_ms), rate)


def _check_history(state: SimState, from_ms: int, now_ms: int) -> None:
    """Demo keys may not ask for data older than ``demo_history_days``: the nested 10012 error."""
    days = state.config.demo_history_days
    if state.config.plan == "demo" and from_ms < now_ms - days * DAY_MS:
        raise nested_error(
            401,
            10012,
            "Your request exceeds the allowed time range. Public API users are limited to querying "
            f"historical data within the past {days} days.",
        )


def _grid(from_ms: int, to_ms_: int, step: int, now_ms: int) -> np.ndarray:
    end = min(to_ms_, now_ms)
    first = -(-from_ms // step) * step
    grid = np.arange(first, end + 1, step, dtype=np.int64)
    if to_ms_ >= now_ms and (grid.size == 0 or grid[-1] != now_ms):
        grid = np.append(grid, now_ms)  # the last point is "now", not aligned to a bucket
    return grid


def _chart_body(state: SimState, i: int, times: np.ndarray, rate: float) -> dict:
    times = np.asarray(times, dtype=np.int64)
    if times.size:
        vals = state.truth.values_at(np.full(times.shape, i), times)
        keep = vals["listed"]
        times = times[keep]
        price, mcap, vol = vals["price"][keep], vals["market_cap"][keep], vals["total_volume"][keep]
    else:
        price = mcap = vol = np.zeros(0)
    f = state.config.faults
    coin = state.universe.ids[i]
    sec = times // 1000
    if f.gap_rate and times.size > 1:
        keep = state.record_u(np.full(times.shape, i), sec, F_GAP) >= f.gap_rate
        keep[-1] = True
        for t in times[~keep]:
            state.log_fault("gap", "/market_chart", coin, int(t))
        times, price, mcap, vol, sec = times[keep], price[keep], mcap[keep], vol[keep], sec[keep]
    if rate != 1.0:
        price = round_significant(price * rate, 8)
        mcap, vol = mcap * rate, vol * rate
    if f.spike_rate and times.size:
        spikes = state.record_u(np.full(times.shape, i), sec, F_SPIKE) < f.spike_rate
        price = np.where(spikes, round_significant(price * f.spike_factor, 8), price)
        for t in times[spikes]:
            state.log_fault("spike", "/market_chart", coin, int(t))
    prices: list = [[int(t), float(p)] for t, p in zip(times, price, strict=True)]
    if f.malformed_rate and times.size:
        bad = state.record_u(np.full(times.shape, i), sec, F_MALFORMED) < f.malformed_rate
        kinds = (state.record_u(np.full(times.shape, i), sec, F_MALFORMED_KIND) * 5).astype(int)
        for j in np.nonzero(bad)[0]:
            t = prices[j][0]
            prices[j] = [[t, None], [t, "abc"], [t], [t, -abs(prices[j][1])], [t // 1000, prices[j][1]]][
                kinds[j]
            ]
            state.log_fault(f"malformed_{kinds[j]}", "/market_chart", coin, int(t))
    return {
        "prices": prices,
        "market_caps": [[int(t), num(m)] for t, m in zip(times, mcap, strict=True)],
        "total_volumes": [[int(t), num(v)] for t, v in zip(times, vol, strict=True)],
    }
