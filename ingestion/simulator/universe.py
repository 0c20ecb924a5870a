"""The simulated coin universe: real ids/symbols/names, heavy-tailed market caps, per-coin walk params."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .walk import seed_keys, uniform

DATA_DIR = Path(__file__).resolve().parent / "data"

EPOCH0_MS = 1_517_443_200_000  # 2018-02-01T00:00:00Z: tick index 0 of every coin
DATA_START_MS = 1_518_134_400_000  # 2018-02-09T00:00:00Z: first 5-minute/OHLC data upstream
REF_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: prices are calibrated to the 2023 sample here
LAST_LISTING_MS = 1_735_603_200_000  # 2024-12-31: every coin is listed by then
YEAR_S = 31_536_000.0

STABLECOINS = {"tether", "usd-coin", "binance-usd", "dai", "true-usd", "paxos-standard", "frax", "usdd"}

# streams of the counter-based generator
S_PRICE, S_VOLUME, S_PARAMS, S_FAULTS = 1, 2, 3, 4


@lru_cache(maxsize=1)
def real_coins_list() -> list[list[str]]:
    """[[id, symbol, name], ...] from the recorded real /coins/list (12,695 coins, 2023-01-08)."""
    with gzip.open(DATA_DIR / "coins_list.json.gz", "rt", encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def real_top100() -> list[dict]:
    """The first page of the recorded real /coins/markets: the head of the simulated universe."""
    with open(DATA_DIR / "top100_2023-01-08.json", encoding="utf-8") as fh:
        return json.load(fh)


@dataclass
class Universe:
    """Static per-coin attributes, index-aligned numpy arrays (index = coin number)."""

    ids: list[str]
    symbols: list[str]
    names: list[str]
    images: list[str]
    index: dict[str, int]
    period_ms: np.ndarray  # int64, tick period
    phase_ms: np.ndarray  # int64, tick phase
    listed_ms: np.ndarray  # int64, first data point
    price_ref: np.ndarray  # price at REF_MS
    sigma_tick: np.ndarray  # log-price stdev per tick
    volume_ref: np.ndarray  # rolling 24h volume at REF_MS
    sigma_vol_tick: np.ndarray
    circulating: np.ndarray
    total_supply: np.ndarray  # NaN = null
    max_supply: np.ndarray  # NaN = null
    no_market_cap: np.ndarray  # bool: market_cap reported as 0, rank null
    ath_ref: np.ndarray
    ath_date: list[str]
    atl_ref: np.ndarray
    atl_date: list[str]
    roi_base: np.ndarray  # NaN = roi null, else the ICO price
    price_keys: np.ndarray
    volume_keys: np.ndarray
    k_ref: np.ndarray
    b_ref: np.ndarray
    bv_ref: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def _iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def build_universe(
    coins: int,
    seed: int,
    period_range: tuple[float, float] = (20.0, 60.0),
    head_period_range: tuple[float, float] | None = None,
) -> Universe:
    if not 1 <= coins <= 20_000:
        raise ValueError("coins must be between 1 and 20,000")
    from .walk import brownian

    head = real_top100()
    head_ids = {c["id"] for c in head}
    rest = [row for row in real_coins_list() if row[0] not in head_ids]
    # seeded shuffle of the long tail so different seeds give different universes
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rest))
    rest = [rest[i] for i in order]
    rows: list[list[str]] = [[c["id"], c["symbol"], c["name"]] for c in head] + rest
    n_synth = max(0, coins - len(rows))
    rows += [[f"simcoin-{i}", f"sim{i}", f"Simcoin {i}"] for i in range(n_synth)]
    rows = rows[:coins]
    n = len(rows)
    n_head = min(n, len(head))

    pkeys = seed_keys(seed, n, S_PARAMS)
    idx = np.arange(n, dtype=np.int64)

    def u(j: int) -> np.ndarray:
        return uniform(pkeys, np.full(n, j, dtype=np.int64))

    lo, hi = period_range
    period_ms = np.round((lo + (hi - lo) * u(1)) * 1000).astype(np.int64)
    phase_ms = np.floor(u(2) * period_ms).astype(np.int64)
    listed_ms = np.where(
        idx < n_head,
        DATA_START_MS,
        DATA_START_MS + np.floor(u(3) * (LAST_LISTING_MS - DATA_START_MS)).astype(np.int64),
    ).astype(np.int64)

    # heavy-tailed market caps for the tail: Zipf-like in rank with log-normal noise
    mcap_100 = float(head[-1]["market_cap"]) if n_head == len(head) else 3e8
    rank = idx + 1.0
    zipf = mcap_100 * (100.0 / np.maximum(rank, 100.0)) ** 1.35
    noise = np.exp(0.6 * np.sqrt(-2 * np.log(u(4))) * np.cos(2 * np.pi * u(5)))
    mcap = zipf * noise
    log10_price = -6.0 + 8.0 * u(6) ** 1.5
    price = np.power(10.0, log10_price)
    circulating = mcap / price
    total_supply = np.where(u(7) < 0.9, circulating * (1 + 2 * u(8)), np.nan)
    max_supply = np.where(u(9) < 0.55, np.nan_to_num(total_supply, nan=circulating) * (1 + u(10)), np.nan)
    volume = mcap * np.exp(np.log(0.03) + 1.0 * np.sqrt(-2 * np.log(u(11))) * np.cos(2 * np.pi * u(12)))
    annual_vol = 0.8 + 0.9 * u(13)
    no_mcap = (idx >= n_head) & (u(14) < 0.03)
    roi_base = np.where((u(15) < 0.1) & ~no_mcap, price * (0.05 + 2 * u(16)), np.nan)
    ath_ref = price * (1.5 + 28.5 * u(17))
    atl_ref = price * (0.01 + 0.49 * u(18))

    images: list[str] = []
    ath_date: list[str] = []
    atl_date: list[str] = []
    ath_ms = (1_604_188_800_000 + u(19) * 40_000_000_000).astype(np.int64)  # 2020-11 .. 2022-02
    atl_ms = (1_420_070_400_000 + u(20) * 150_000_000_000).astype(np.int64)  # 2015 .. 2019
    for i, (cid, _sym, _name) in enumerate(rows):
        if i < n_head:
            h = head[i]
            price[i] = h["current_price"]
            circulating[i] = h["circulating_supply"]
            total_supply[i] = np.nan if h["total_supply"] is None else h["total_supply"]
            max_supply[i] = np.nan if h["max_supply"] is None else h["max_supply"]
            volume[i] = h["total_volume"]
            ath_ref[i] = h["ath"]
            atl_ref[i] = h["atl"]
            images.append(h["image"])
            ath_date.append(h["ath_date"])
            atl_date.append(h["atl_date"])
            annual_vol[i] = 0.05 if cid in STABLECOINS else 0.45 + 0.35 * annual_vol[i] / 1.7
        else:
            images.append(f"https://assets.coingecko.com/coins/images/{20000 + i}/large/{cid}.png?1696500000")
            ath_date.append(_iso_ms(int(ath_ms[i])))
            atl_date.append(_iso_ms(int(atl_ms[i])))
    if head_period_range is not None:
        # the head (the real top 100 of the 2023 sample: the large caps) refreshes faster, each coin
        # with a phase in its own period: upstream refreshes large caps continuously
        top = idx[:n_head]
        hlo, hhi = head_period_range
        period_ms[top] = np.round((hlo + (hhi - hlo) * u(1)[top]) * 1000).astype(np.int64)
        phase_ms[top] = np.floor(u(2)[top] * period_ms[top]).astype(np.int64)
    sigma_tick = annual_vol * np.sqrt(period_ms / 1000.0 / YEAR_S)
    sigma_vol_tick = 0.8 * np.sqrt(period_ms / 1000.0 / YEAR_S)

    price_keys = seed_keys(seed, n, S_PRICE)
    volume_keys = seed_keys(seed, n, S_VOLUME)
    k_ref = (REF_MS - EPOCH0_MS - phase_ms) // period_ms
    b_ref = brownian(price_keys, k_ref)
    bv_ref = brownian(volume_keys, k_ref)
    ids = [r[0] for r in rows]
    return Universe(
        ids=ids,
        symbols=[r[1] for r in rows],
        names=[r[2] for r in rows],
        images=images,
        index={cid: i for i, cid in enumerate(ids)},
        period_ms=period_ms,
        phase_ms=phase_ms,
        listed_ms=listed_ms,
        price_ref=price,
        sigma_tick=sigma_tick,
        volume_ref=volume,
        sigma_vol_tick=sigma_vol_tick,
        circulating=circulating,
        total_supply=total_supply,
        max_supply=max_supply,
        no_market_cap=no_mcap,
        ath_ref=ath_ref,
        ath_date=ath_date,
        atl_ref=atl_ref,
        atl_date=atl_date,
        roi_base=roi_base,
        price_keys=price_keys,
        volume_keys=volume_keys,
        k_ref=k_ref,
        b_ref=b_ref,
        bv_ref=bv_ref,
    )
