"""``/simple/price`` (each coin's tick in force now, in several currencies) and
``/simple/supported_vs_currencies``."""

from __future__ import annotations

import numpy as np

from ..core import DAY_MS
from ..faults import F_MALFORMED, F_MALFORMED_KIND, F_SPIKE
from ..protocol import VS_RATES, flat_error, num, round_sig, truthy, vs_rate
from ..state import SimState


def supported_vs_currencies() -> list[str]:
    return list(VS_RATES)


def simple_price(state: SimState, params: dict, now_ms: int) -> dict:
    vs_list = [v.strip().lower() for v in (params.get("vs_currencies") or "").split(",") if v.strip()]
    if not vs_list:
        raise flat_error(400, "Missing parameter vs_currencies")
    for vs in vs_list:
        vs_rate(vs, "vs_currencies")
    ids = [s.strip().lower() for s in (params.get("ids") or "").split(",") if s.strip()]
    u = state.universe
    known = [u.index[c] for c in dict.fromkeys(ids) if c in u.index]
    if not known:
        return {}
    ci = np.array(known, dtype=np.int64)
    now = state.truth.values_at(ci, now_ms)
    ago = state.truth.values_at(ci, now_ms - DAY_MS)
    f = state.config.faults
    out: dict = {}
    for j, i in enumerate(known):
        if not bool(now["listed"][j]):
            continue
        price = float(now["price"][j])
        k = int(now["k"][j])
        if f.spike_rate and state.record_u(i, k, F_SPIKE) < f.spike_rate:
            price = round_sig(price * f.spike_factor)
            state.log_fault("spike", "/simple/price", u.ids[i], int(now["tick_ms"][j]))
        entry: dict = {}
        for vs in vs_list:
            rate = VS_RATES[vs]
            entry[vs] = num(round_sig(price * rate) if rate != 1.0 else price)
            if truthy(params.get("include_market_cap")):
                entry[f"{vs}_market_cap"] = num(float(now["market_cap"][j]) * rate)
            if truthy(params.get("include_24hr_vol")):
                entry[f"{vs}_24h_vol"] = num(float(now["total_volume"][j]) * rate)
            if truthy(params.get("include_24hr_change")):
                p24 = float(ago["price"][j])
                entry[f"{vs}_24h_change"] = (price / p24 - 1) * 100 if bool(ago["listed"][j]) else None
        if truthy(params.get("include_last_updated_at")):
            entry["last_updated_at"] = int(now["tick_ms"][j]) // 1000
        if f.malformed_rate and state.record_u(i, k, F_MALFORMED) < f.malformed_rate:
            entry[vs_list[0]] = [None, "NaN", -1.5, "abc"][int(state.record_u(i, k, F_MALFORMED_KIND) * 4)]
            state.log_fault("malformed", "/simple/price", u.ids[i], None)
        out[u.ids[i]] = entry
    return out
