"""``/exchange_rates`` and ``/global``: the market as a whole, computed from the same price paths as
``/coins/markets`` (the same moment gives the same prices, market caps and volumes)."""

from __future__ import annotations

import numpy as np

from ..protocol import VS_NAMES, VS_RATES, num
from ..state import SimState

#: Exchanges the upstream tracks (a constant: the simulator has no exchanges).
MARKETS = 1046


def _price_usd(state: SimState, coin: str, now_ms: int) -> float | None:
    i = state.universe.index.get(coin)
    if i is None:
        return None
    values = state.truth.values_at(np.array([i]), now_ms)
    return float(values["price"][0]) if bool(values["listed"][0]) else None


def exchange_rates(state: SimState, now_ms: int) -> dict:
    """Units of each currency per 1 BTC: fiat from the bitcoin price in USD times the fixed fiat
    rates every ``vs_currency`` conversion uses; ETH from the ethereum price."""
    btc = _price_usd(state, "bitcoin", now_ms)
    if btc is None:
        return {"rates": {}}
    rates: dict[str, dict] = {"btc": {"name": "Bitcoin", "unit": "BTC", "value": 1.0, "type": "crypto"}}
    eth = _price_usd(state, "ethereum", now_ms)
    if eth:
        rates["eth"] = {"name": "Ether", "unit": "ETH", "value": round(btc / eth, 3), "type": "crypto"}
    for code, rate in VS_RATES.items():
        name, unit = VS_NAMES[code]
        rates[code] = {"name": name, "unit": unit, "value": num(round(btc * rate, 3)), "type": "fiat"}
    return {"rates": rates}


def global_market(state: SimState, now_ms: int) -> dict:
    """Totals over every listed coin at ``now_ms`` (what a /coins/markets walk at that moment sums
    to), dominance of the ten largest coins, and the 24h market-cap change."""
    market = state.truth.market_state(now_ms)
    listed = market.listed
    caps = np.where(listed, market.market_cap, 0.0)
    total_cap = float(caps.sum())
    total_vol = float(np.where(listed, market.total_volume, 0.0).sum())
    cap_24h = np.where(listed & ~np.isnan(market.market_cap_24h), market.market_cap_24h, 0.0)
    then = float(cap_24h.sum())
    btc = _price_usd(state, "bitcoin", now_ms) or 1.0
    top = np.argsort(-caps, kind="stable")[:10]
    u = state.universe
    shares = {u.symbols[i]: float(caps[i]) / total_cap * 100 for i in top if total_cap and caps[i] > 0}
    totals_cap = {code: num(total_cap * rate) for code, rate in VS_RATES.items()}
    totals_vol = {code: num(total_vol * rate) for code, rate in VS_RATES.items()}
    return {
        "data": {
            "active_cryptocurrencies": int(listed.sum()),
            "upcoming_icos": 0,
            "ongoing_icos": 49,
            "ended_icos": 3376,
            "markets": MARKETS,
            "total_market_cap": {"btc": total_cap / btc, **totals_cap},
            "total_volume": {"btc": total_vol / btc, **totals_vol},
            "market_cap_percentage": shares,
            "market_cap_change_percentage_24h_usd": (total_cap / then - 1) * 100 if then else None,
            "updated_at": now_ms // 1000,
        }
    }
