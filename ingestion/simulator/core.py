"""Ground truth of the simulated upstream: ticks, market snapshots, chart points and OHLC candles.

Everything here is a pure function of (seed, coin, time): the HTTP layer (``app.py`` and
``endpoints/``) only selects, formats and (optionally) corrupts these values. Tests and the ingestion
pipeline call the same functions to know exactly what the upstream showed at any moment.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from .universe import EPOCH0_MS, Universe
from .walk import brownian, round_significant

PRICE_DIGITS = 8
MIN5_MS = 300_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def to_ms(t: datetime | float | int | str) -> int:
    """datetime (aware or naive UTC), ISO 8601 string or epoch seconds -> epoch milliseconds."""
    if isinstance(t, str):
        text = t
        try:
            t = float(text)
        except ValueError:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        delta = t - datetime(1970, 1, 1, tzinfo=UTC)
        return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000
    return math.floor(float(t) * 1000 + 1e-6)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=(ms % 1000) * 1000)


def iso_ms(ms: int) -> str:
    """CoinGecko's ``last_updated`` format: ISO 8601 with milliseconds and Z."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Tick:
    """One upstream refresh of one coin: the values /coins/markets shows from ``time`` on."""

    coin_id: str
    index: int
    time_ms: int
    price: float
    market_cap: float
    total_volume: float

    @property
    def time(self) -> datetime:
        return ms_to_datetime(self.time_ms)


@dataclass
class MarketState:
    """Vectorised state of every coin at one moment (index-aligned with the universe)."""

    t_ms: int
    k: np.ndarray
    tick_ms: np.ndarray
    listed: np.ndarray
    price: np.ndarray
    market_cap: np.ndarray
    total_volume: np.ndarray
    price_24h: np.ndarray
    market_cap_24h: np.ndarray
    high_24h: np.ndarray
    low_24h: np.ndarray
    rank: np.ndarray  # 1-based market-cap rank, 0 = none


class GroundTruth:
    """Deterministic values of a universe; thread-safe, with small caches for hot paths."""

    def __init__(self, universe: Universe):
        self.u = universe
        self._lock = threading.RLock()
        self._hour_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._hl_cache: tuple | None = None
        self._incremental: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    # --- vectorised primitives -----------------------------------------------------------------
    def tick_index(self, ci: np.ndarray, t_ms: np.ndarray | int) -> np.ndarray:
        u = self.u
        return (np.asarray(t_ms, dtype=np.int64) - EPOCH0_MS - u.phase_ms[ci]) // u.period_ms[ci]

    def tick_ms(self, ci: np.ndarray, k: np.ndarray) -> np.ndarray:
        u = self.u
        return EPOCH0_MS + u.phase_ms[ci] + np.asarray(k, dtype=np.int64) * u.period_ms[ci]

    def price_at_index(self, ci: np.ndarray, k: np.ndarray) -> np.ndarray:
        u = self.u
        kk = np.maximum(np.asarray(k, dtype=np.int64), 0)
        b = brownian(u.price_keys[ci], kk)
        raw = u.price_ref[ci] * np.exp(u.sigma_tick[ci] * (b - u.b_ref[ci]))
        return round_significant(raw, PRICE_DIGITS)

    def volume_at_index(self, ci: np.ndarray, k: np.ndarray) -> np.ndarray:
        u = self.u
        kk = np.maximum(np.asarray(k, dtype=np.int64), 0)
        b = brownian(u.volume_keys[ci], kk)
        return np.round(u.volume_ref[ci] * np.exp(u.sigma_vol_tick[ci] * (b - u.bv_ref[ci])))

    def market_cap_of(self, ci: np.ndarray, price: np.ndarray) -> np.ndarray:
        u = self.u
        return np.where(u.no_market_cap[ci], 0.0, np.round(price * u.circulating[ci]))

    def values_at(self, ci: np.ndarray, t_ms: np.ndarray | int) -> dict[str, np.ndarray]:
        """Tick at or before each time, for index-aligned coin indices ``ci`` and times ``t_ms``."""
        ci, t = np.broadcast_arrays(np.asarray(ci, dtype=np.int64), np.asarray(t_ms, dtype=np.int64))
        k = self.tick_index(ci, t)
        tms = self.tick_ms(ci, k)
        listed = (tms >= self.u.listed_ms[ci]) & (k >= 0)
        price = self.price_at_index(ci, k)
        return {
            "k": k,
            "tick_ms": tms,
            "listed": listed,
            "price": price,
            "market_cap": self.market_cap_of(ci, price),
            "total_volume": self.volume_at_index(ci, k),
        }

    # --- per-coin ground truth -----------------------------------------------------------------
    def coin_index(self, coin_id: str) -> int:
        try:
            return self.u.index[coin_id]
        except KeyError:
            raise KeyError(f"unknown coin {coin_id!r}") from None

    def _tick(self, i: int, k: int) -> Tick:
        ci = np.array([i])
        kk = np.array([k])
        price = self.price_at_index(ci, kk)
        return Tick(
            coin_id=self.u.ids[i],
            index=int(k),
            time_ms=int(self.tick_ms(ci, kk)[0]),
            price=float(price[0]),
            market_cap=float(self.market_cap_of(ci, price)[0]),
            total_volume=float(self.volume_at_index(ci, kk)[0]),
        )

    def tick_at_or_before(self, coin_id: str, t: datetime | float) -> Tick | None:
        i = self.coin_index(coin_id)
        ci = np.array([i])
        k = int(self.tick_index(ci, to_ms(t))[0])
        if k < 0 or int(self.tick_ms(ci, np.array([k]))[0]) < int(self.u.listed_ms[i]):
            return None
        return self._tick(i, k)

    def ticks_between(self, coin_id: str, start: datetime | float, end: datetime | float) -> list[Tick]:
        """Every tick with ``start <= time <= end`` (inclusive), oldest first."""
        i = self.coin_index(coin_id)
        ci = np.array([i])
        s_ms, e_ms = max(to_ms(start), int(self.u.listed_ms[i])), to_ms(end)
        k0 = int(self.tick_index(ci, s_ms - 1)[0]) + 1
        k1 = int(self.tick_index(ci, e_ms)[0])
        if k1 < k0:
            return []
        ks = np.arange(max(k0, 0), k1 + 1, dtype=np.int64)
        cis = np.full(ks.shape, i)
        price = self.price_at_index(cis, ks)
        mcap = self.market_cap_of(cis, price)
        vol = self.volume_at_index(cis, ks)
        tms = self.tick_ms(cis, ks)
        cid = self.u.ids[i]
        return [
            Tick(cid, int(k), int(t), float(p), float(m), float(v))
            for k, t, p, m, v in zip(ks, tms, price, mcap, vol, strict=True)
        ]

    # --- market snapshot (what /coins/markets is built from) ------------------------------------
    def _incremental_values(self, name: str, t_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """price, market cap, volume of all coins at t, recomputing only coins whose tick changed."""
        n = len(self.u)
        all_ci = np.arange(n)
        k = self.tick_index(all_ci, t_ms)
        prev = self._incremental.get(name)
        if prev is None:
            changed = np.ones(n, dtype=bool)
            price = np.zeros(n)
            vol = np.zeros(n)
        else:
            pk, price, _mcap, vol = prev
            price = price.copy()
            vol = vol.copy()
            changed = pk != k
        ci = all_ci[changed]
        if ci.size:
            price[ci] = self.price_at_index(ci, k[ci])
            vol[ci] = self.volume_at_index(ci, k[ci])
        mcap = self.market_cap_of(all_ci, price)
        self._incremental[name] = (k, price, mcap, vol)
        return price, mcap, vol

    def _hour_prices(self, hour: int) -> np.ndarray:
        cached = self._hour_cache.get(hour)
        if cached is not None:
            self._hour_cache.move_to_end(hour)
            return cached
        n = len(self.u)
        ci = np.arange(n)
        t = hour * HOUR_MS
        k = self.tick_index(ci, t)
        listed = (self.tick_ms(ci, k) >= self.u.listed_ms) & (k >= 0)
        prices = np.where(listed, self.price_at_index(ci, k), np.nan)
        self._hour_cache[hour] = prices
        while len(self._hour_cache) > 60:
            self._hour_cache.popitem(last=False)
        return prices

    def market_state(self, t_ms: int) -> MarketState:
        with self._lock:
            n = len(self.u)
            ci = np.arange(n)
            k = self.tick_index(ci, t_ms)
            tick_ms = self.tick_ms(ci, k)
            listed = (tick_ms >= self.u.listed_ms) & (k >= 0)
            price, mcap, vol = self._incremental_values("now", t_ms)
            price_24h, mcap_24h, _ = self._incremental_values("24h", t_ms - DAY_MS)
            first_hour = (t_ms - DAY_MS) // HOUR_MS + 1
            last_hour = t_ms // HOUR_MS
            window = (first_hour, last_hour)
            if self._hl_cache is None or self._hl_cache[0] != window:
                stack = np.vstack([self._hour_prices(h) for h in range(first_hour, last_hour + 1)])
                self._hl_cache = (
                    window,
                    np.max(np.where(np.isnan(stack), -np.inf, stack), axis=0),
                    np.min(np.where(np.isnan(stack), np.inf, stack), axis=0),
                )
            _, hour_high, hour_low = self._hl_cache
        listed_24h = self.tick_ms(ci, self.tick_index(ci, t_ms - DAY_MS)) >= self.u.listed_ms
        p24 = np.where(listed_24h, price_24h, np.nan)
        high = np.maximum(np.maximum(hour_high, price), np.where(listed_24h, price_24h, -np.inf))
        low = np.minimum(np.minimum(hour_low, price), np.where(listed_24h, price_24h, np.inf))
        ranked = listed & (mcap > 0)
        order = np.lexsort((ci, -mcap))
        order = order[ranked[order]]
        rank = np.zeros(n, dtype=np.int64)
        rank[order] = np.arange(1, order.size + 1)
        return MarketState(
            t_ms=t_ms,
            k=k,
            tick_ms=tick_ms,
            listed=listed,
            price=price,
            market_cap=mcap,
            total_volume=vol,
            price_24h=p24,
            market_cap_24h=np.where(listed_24h, mcap_24h, np.nan),
            high_24h=high,
            low_24h=low,
            rank=rank,
        )

    # --- candles ---------------------------------------------------------------------------------
    def ohlc(
        self, coin_id: str, starts_ms: np.ndarray, candle_ms: int, now_ms: int, sample_ms: int | None = None
    ) -> dict[str, np.ndarray]:
        """OHLC of candles ``[start, start + candle)``; values are the tick prices in force.

        open = price in force at the start, close = price in force at min(end, now), high/low over
        open, close and every tick inside (or, for long candles, every ``sample_ms`` grid point).
        Candles entirely before the listing are dropped.
        """
        i = self.coin_index(coin_id)
        starts = np.asarray(starts_ms, dtype=np.int64)
        ends = np.minimum(starts + candle_ms - 1, now_ms)  # a tick exactly at the end opens the next
        keep = (ends >= self.u.listed_ms[i]) & (ends >= starts)
        starts, ends = starts[keep], ends[keep]
        starts_eff = np.maximum(starts, self.u.listed_ms[i])
        if not starts.size:
            empty = np.zeros(0)
            return {"start_ms": starts, "open": empty, "high": empty, "low": empty, "close": empty}
        ci_one = np.full(starts.shape, i)
        if sample_ms is None:
            k0 = self.tick_index(ci_one, starts_eff)
            k1 = self.tick_index(ci_one, ends)
            counts = (k1 - k0 + 1).astype(np.int64)
            offsets = np.repeat(np.cumsum(counts) - counts, counts)
            ks = np.repeat(k0, counts) + (np.arange(int(counts.sum())) - offsets)
        else:
            n_s = ((ends - starts_eff) // sample_ms + 1).astype(np.int64)
            counts = n_s + 1
            offsets = np.repeat(np.cumsum(counts) - counts, counts)
            j = np.arange(int(counts.sum())) - offsets
            times = np.repeat(starts_eff, counts) + j * sample_ms
            last = j == np.repeat(counts - 1, counts)
            times = np.where(last, np.repeat(ends, counts), np.minimum(times, np.repeat(ends, counts)))
            ks = self.tick_index(np.full(times.shape, i), times)
        cis = np.full(ks.shape, i)
        tms = self.tick_ms(cis, ks)
        prices = self.price_at_index(cis, ks)
        # ticks before the listing do not exist: use the first listed price instead
        first_k = int(self.tick_index(np.array([i]), self.u.listed_ms[i] - 1)[0]) + 1
        first_price = float(self.price_at_index(np.array([i]), np.array([first_k]))[0])
        prices = np.where(tms < self.u.listed_ms[i], first_price, prices)
        bounds = np.cumsum(counts) - counts
        return {
            "start_ms": starts,
            "open": prices[bounds],
            "high": np.maximum.reduceat(prices, bounds),
            "low": np.minimum.reduceat(prices, bounds),
            "close": prices[bounds + counts - 1],
        }
