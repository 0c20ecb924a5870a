"""Quote currencies (``vs=``) of the latest prices and markets, and the snapshot field groups of
``/v1/prices?include=``. Pure functions over selector rows: the views call them.

Conversion (docs/marketdata.md "Quote currencies"): every amount is stored in USD. Fiat quotes
multiply it by the stored /exchange_rates rate per USD (refreshed every 5 minutes); ``btc`` and
``eth`` divide it by our own bitcoin/ethereum price, and their price changes are relative to the
quote coin's own change over the same window: (1 + change) / (1 + quote's change) - 1. All-time
highs and lows in BTC/ETH would need the quote's price at that date, which we do not have: null.
Candles stay in USD (docs say why).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from marketdata import selectors

#: Amounts (USD when stored) converted into the quote currency.
MONEY_FIELDS = (
    "price",
    "market_cap",
    "volume_24h",
    "high_24h",
    "low_24h",
    "fully_diluted_valuation",
    "ath",
    "atl",
)
#: Price changes and their window.
CHANGE_FIELDS = {
    "change_1h_pct": "1h",
    "change_24h_pct": "24h",
    "change_7d_pct": "7d",
    "change_30d_pct": "30d",
}

#: ``/v1/prices?include=`` groups → the snapshot fields each adds to the default five.
INCLUDE_GROUPS: dict[str, tuple[str, ...]] = {
    "rank": ("rank",),
    "range_24h": ("high_24h", "low_24h"),
    "changes": ("change_1h_pct", "change_7d_pct", "change_30d_pct"),
    "supply": ("circulating_supply", "total_supply", "max_supply", "fully_diluted_valuation"),
    "ath_atl": ("ath", "ath_change_pct", "ath_date", "atl", "atl_change_pct", "atl_date"),
    "image": ("image_url",),
}
#: The fields of /v1/prices without ``include``.
PRICE_FIELDS = ("price", "market_cap", "volume_24h", "change_24h_pct", "last_updated")
#: Every snapshot field of a market row (/v1/markets, coin detail), in response order.
MARKET_FIELDS = (
    "price",
    "market_cap",
    "rank",
    "volume_24h",
    "high_24h",
    "low_24h",
    "change_24h_pct",
    "last_updated",
    *selectors.SNAPSHOT_DETAIL_FIELDS,
)


def vs_currencies() -> tuple[str, ...]:
    """The supported quote currencies (``MARKETDATA_VS_CURRENCIES``), usd first."""
    codes = [c.strip().lower() for c in settings.MARKETDATA_VS_CURRENCIES if c.strip()]
    return tuple(dict.fromkeys(["usd", *codes]))


@dataclass(frozen=True)
class Quote:
    code: str
    factor: float = 1.0  # USD amount x factor = amount in the quote currency
    quote_changes: dict[str, float | None] = field(default_factory=dict)  # btc/eth: the quote's own

    @property
    def crypto(self) -> bool:
        return self.code in selectors.QUOTE_COINS


USD = Quote("usd")


def quote(code: str) -> Quote | None:
    """The conversion into ``code`` (a supported currency), None when its rate is not stored yet."""
    if code == "usd":
        return USD
    inputs = selectors.quote_inputs(code)
    if inputs is None:
        return None
    factor, changes = inputs
    return Quote(code, factor, changes)


def _relative(change: float | None, base: float | None) -> float | None:
    if change is None or base is None or base <= -100.0:
        return None
    return ((1 + change / 100.0) / (1 + base / 100.0) - 1) * 100.0


def market_row(values: Iterable[Any], q: Quote) -> dict[str, Any]:
    """``MARKET_FIELDS`` of a selector row (from ``price`` on) as a dict in the quote currency, with
    ``ath_change_pct``/``atl_change_pct`` (the current price against them) and ``image_url`` null
    when empty."""
    row = dict(zip(MARKET_FIELDS, values, strict=True))
    row["image_url"] = row["image_url"] or None
    if q.code != "usd":
        for name in MONEY_FIELDS:
            if row[name] is not None:
                row[name] *= q.factor
        if q.crypto:
            for name, window in CHANGE_FIELDS.items():
                row[name] = _relative(row[name], q.quote_changes.get(window))
            row.update(ath=None, ath_date=None, atl=None, atl_date=None)
    price = row["price"]
    row["ath_change_pct"] = (price / row["ath"] - 1) * 100.0 if price and row["ath"] else None
    row["atl_change_pct"] = (price / row["atl"] - 1) * 100.0 if price and row["atl"] else None
    return row


def price_entry(row: dict[str, Any], groups: tuple[str, ...]) -> dict[str, Any]:
    """The /v1/prices entry of a converted market row: the default fields plus the ``groups``."""
    names = [*PRICE_FIELDS, *(f for g in groups for f in INCLUDE_GROUPS[g])]
    return {n: row[n] for n in names}
