"""``/coins/markets``: ranked, paged market records, with the record-level faults (stale, spike,
malformed). ``market_records(..., faults=False)`` is the ground truth behind ``Simulator.markets_at``."""

from __future__ import annotations

import math

import numpy as np

from ..core import DAY_MS, HOUR_MS, MarketState, iso_ms
from ..faults import F_MALFORMED, F_MALFORMED_KIND, F_SPIKE, F_STALE
from ..protocol import flat_error, num, round_sig, vs_rate
from ..state import SimState

MARKET_ORDERS = ("market_cap_desc", "market_cap_asc", "volume_desc", "volume_asc", "id_asc", "id_desc")
_STATE_COLS = (
    "k", "price", "market_cap", "total_volume", "tick_ms", "price_24h", "market_cap_24h",
    "high_24h", "low_24h", "rank",
)  # fmt: skip
_UNIVERSE_COLS = ("circulating", "total_supply", "max_supply", "ath_ref", "atl_ref", "roi_base")
#: price_change_percentage windows the upstream accepts, in milliseconds.
CHANGE_WINDOWS_MS = {
    "1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "14d": 14 * DAY_MS, "30d": 30 * DAY_MS,
    "200d": 200 * DAY_MS, "1y": 365 * DAY_MS,
}  # fmt: skip


def coins_markets(state: SimState, params: dict, now_ms: int) -> list[dict]:
    rate = vs_rate(params.get("vs_currency"), "vs_currency")
    order = params.get("order") or "market_cap_desc"
    if order not in MARKET_ORDERS:
        raise flat_error(400, "invalid order")
    try:
        per_page = int(float(params.get("per_page") or 100))
        page = int(float(params.get("page") or 1))
    except ValueError:
        raise flat_error(400, "invalid per_page or page") from None
    per_page = min(max(per_page, 1), 250)
    page = max(page, 1)
    market = state.truth.market_state(now_ms)
    idx = ordered(state, market, order)
    u = state.universe
    if params.get("category"):
        idx = idx[:0]
    elif params.get("ids"):
        wanted = {s.strip().lower() for s in params["ids"].split(",")}
        idx = np.array([i for i in idx if u.ids[i] in wanted], dtype=np.int64)
    elif params.get("names"):
        wanted = {s.strip().lower() for s in params["names"].split(",")}
        idx = np.array([i for i in idx if u.names[i].lower() in wanted], dtype=np.int64)
    elif params.get("symbols"):
        wanted = {s.strip().lower() for s in params["symbols"].split(",")}
        idx = np.array([i for i in idx if u.symbols[i].lower() in wanted], dtype=np.int64)
    chosen = idx[(page - 1) * per_page : page * per_page]
    pcts = [p for p in (params.get("price_change_percentage") or "").split(",") if p]
    return market_records(state, market, chosen, rate, faults=True, pcts=pcts)


def ordered(state: SimState, market: MarketState, order: str) -> np.ndarray:
    """Universe indices of the listed coins in ``order``."""
    n = len(state.universe)
    ci = np.arange(n)
    if order in ("market_cap_desc", "market_cap_asc"):
        # ranked coins by rank, unranked (no market cap) after them by volume
        key_rank = np.where(market.rank > 0, market.rank, n + 1)
        idx = np.lexsort((ci, -market.total_volume, key_rank))
        if order == "market_cap_asc":
            idx = idx[::-1]
    elif order in ("volume_desc", "volume_asc"):
        idx = np.lexsort((ci, -market.total_volume))
        if order == "volume_asc":
            idx = idx[::-1]
    else:
        idx = np.argsort(np.array(state.universe.ids, dtype=object), kind="stable")
        if order == "id_desc":
            idx = idx[::-1]
    return idx[market.listed[idx]]


def market_records(
    state: SimState, market: MarketState, chosen, rate: float, *, faults: bool, pcts: list[str] | None = None
) -> list[dict]:
    """Records of the coins ``chosen`` (universe indices), columns pulled out once per page."""
    ch = np.asarray(chosen, dtype=np.int64)
    if not ch.size:
        return []
    cols = {n: getattr(market, n)[ch].tolist() for n in _STATE_COLS}
    cols |= {n: getattr(state.universe, n)[ch].tolist() for n in _UNIVERSE_COLS}
    for window in dict.fromkeys(pcts or ()):
        if window in CHANGE_WINDOWS_MS:  # the price in force one window ago, all coins at once
            old = state.truth.values_at(ch, market.t_ms - CHANGE_WINDOWS_MS[window])
            cols[f"old_{window}"] = np.where(old["listed"], old["price"], np.nan).tolist()
    f = state.config.faults
    flags: dict[str, list[bool]] = {}
    for name, share, kind in (
        ("stale", f.stale_rate, F_STALE),
        ("spike", f.spike_rate, F_SPIKE),
        ("malformed", f.malformed_rate, F_MALFORMED),
    ):
        if faults and share > 0:
            flags[name] = (state.record_u(ch, market.k[ch], kind) < share).tolist()
        else:
            flags[name] = [False] * ch.size
    return [
        _market_record(
            state,
            market,
            i,
            {n: cols[n][j] for n in cols},
            rate,
            stale=flags["stale"][j],
            spike=flags["spike"][j],
            malformed=flags["malformed"][j],
            pcts=pcts,
        )
        for j, i in enumerate(ch.tolist())
    ]


def _market_record(
    state: SimState,
    market: MarketState,
    i: int,
    row: dict,
    rate: float,
    *,
    stale: bool,
    spike: bool,
    malformed: bool,
    pcts: list[str] | None = None,
) -> dict:
    u = state.universe
    f = state.config.faults
    k = row["k"]
    price = row["price"]
    mcap = row["market_cap"]
    vol = row["total_volume"]
    tick_ms = row["tick_ms"]
    if stale:
        old = state.truth.values_at(np.array([i]), market.t_ms - int(f.stale_seconds * 1000))
        if bool(old["listed"][0]):
            price = float(old["price"][0])
            mcap = float(old["market_cap"][0])
            vol = float(old["total_volume"][0])
            tick_ms = int(old["tick_ms"][0])
            state.log_fault("stale", "/coins/markets", u.ids[i], tick_ms)
    if spike:
        price = round_sig(price * f.spike_factor)
        mcap = round(mcap * f.spike_factor)
        state.log_fault("spike", "/coins/markets", u.ids[i], tick_ms)

    def conv(x: float) -> float | None:
        if x is None or math.isnan(x):
            return None
        return round_sig(x * rate) if rate != 1.0 else x

    p = conv(price)
    p24 = row["price_24h"]
    m24 = row["market_cap_24h"]
    change = None if math.isnan(p24) else round_sig((price - p24) * rate)
    change_pct = None if math.isnan(p24) or p24 == 0 else round((price / p24 - 1) * 100, 5)
    mchange = None if math.isnan(m24) or mcap == 0 else (mcap - m24) * rate
    mchange_pct = None if math.isnan(m24) or m24 == 0 or mcap == 0 else round((mcap / m24 - 1) * 100, 5)
    total_supply = row["total_supply"]
    max_supply = row["max_supply"]
    fdv_supply = max_supply if not math.isnan(max_supply) else total_supply
    fdv = None if math.isnan(fdv_supply) or mcap == 0 else round(price * fdv_supply * rate)
    ath_ref, atl_ref = row["ath_ref"], row["atl_ref"]
    ath, ath_date = (ath_ref, u.ath_date[i]) if price <= ath_ref else (price, iso_ms(tick_ms))
    atl, atl_date = (atl_ref, u.atl_date[i]) if price >= atl_ref else (price, iso_ms(tick_ms))
    roi = None
    if not math.isnan(row["roi_base"]):
        times = price / row["roi_base"] - 1
        roi = {"times": times, "currency": "usd", "percentage": times * 100}
    rec = {
        "id": u.ids[i],
        "symbol": u.symbols[i],
        "name": u.names[i],
        "image": u.images[i],
        "current_price": num(p),
        "market_cap": num(round(mcap * rate)),
        "market_cap_rank": row["rank"] or None,
        "fully_diluted_valuation": num(fdv),
        "total_volume": num(round(vol * rate)),
        "high_24h": num(conv(max(row["high_24h"], price))),
        "low_24h": num(conv(min(row["low_24h"], price))),
        "price_change_24h": num(change),
        "price_change_percentage_24h": num(change_pct),
        "market_cap_change_24h": num(mchange),
        "market_cap_change_percentage_24h": num(mchange_pct),
        "circulating_supply": num(row["circulating"]),
        "total_supply": num(total_supply),
        "max_supply": num(max_supply),
        "ath": num(conv(ath)),
        "ath_change_percentage": num(round((price / ath - 1) * 100, 5)),
        "ath_date": ath_date,
        "atl": num(conv(atl)),
        "atl_change_percentage": num(round((price / atl - 1) * 100, 5)),
        "atl_date": atl_date,
        "roi": roi,
        "last_updated": iso_ms(tick_ms),
    }
    for window in pcts or ():
        if window in CHANGE_WINDOWS_MS:
            old = row[f"old_{window}"]
            rec[f"price_change_percentage_{window}_in_currency"] = (
                None if math.isnan(old) else round((price / old - 1) * 100, 5)
            )
    if malformed:
        _malform_record(state, rec, i, k)
    return rec


def _malform_record(state: SimState, rec: dict, i: int, k: int) -> None:
    kind = int(state.record_u(i, k, F_MALFORMED_KIND) * 7)
    state.log_fault(f"malformed_{kind}", "/coins/markets", rec["id"], None)
    if kind == 0:
        rec["current_price"] = None
    elif kind == 1:
        rec["current_price"] = "NaN"
    elif kind == 2:
        rec["current_price"] = -abs(rec["current_price"] or 1.0)
    elif kind == 3:
        rec["current_price"] = "abc"
    elif kind == 4:
        rec["last_updated"] = "not-a-date"
    elif kind == 5:
        del rec["id"]
    else:
        rec["last_updated"] = "1970-01-01T00:00:00.000Z"
