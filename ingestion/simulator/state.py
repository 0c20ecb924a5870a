"""What a simulator knows and can be told, apart from HTTP: its config and clock, the ground truth,
the fault settings with their deterministic decisions, the queue of forced faults, revoked keys and
the counters/logs. ``app.Simulator`` (the WSGI app) builds on it; endpoints and the control API
read it."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime

import numpy as np

from .clock import SimClock
from .config import FaultConfig, SimulatorConfig
from .core import GroundTruth, MarketState, Tick, iso_ms, ms_to_datetime, to_ms
from .universe import S_FAULTS, build_universe
from .walk import seed_keys, uniform


class SimState:
    """Ground truth + run-time state. ``clock()`` returns epoch seconds or a datetime."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        clock: Callable[[], float | datetime] | None = None,
        rate_clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config or SimulatorConfig()
        period_lo, period_hi = self.config.tick_period
        self.universe = build_universe(
            self.config.coins, self.config.seed, (period_lo, period_hi), self.config.head_tick_period
        )
        self.truth = GroundTruth(self.universe)
        self.clock = clock or SimClock()
        self.rate_clock = rate_clock
        self._lock = threading.Lock()
        self._seq = 0
        self._forced: deque[dict] = deque()
        self._revoked: dict[str, int] = {}
        self._rate_counts: dict[tuple[str, int], int] = {}
        self._fault_keys = seed_keys(self.config.faults.seed, len(self.universe), S_FAULTS)
        self.stats: Counter = Counter()
        self.request_log: deque[dict] = deque(maxlen=5000)
        self.fault_log: deque[dict] = deque(maxlen=20000)

    # --- time ----------------------------------------------------------------------------------
    def now_ms(self) -> int:
        return to_ms(self.clock())

    def now(self) -> datetime:
        return ms_to_datetime(self.now_ms())

    # --- ground truth (see core.GroundTruth) ----------------------------------------------------
    @property
    def coin_ids(self) -> list[str]:
        return self.universe.ids

    def tick_at_or_before(self, coin_id: str, t: datetime | float) -> Tick | None:
        return self.truth.tick_at_or_before(coin_id, t)

    def ticks_between(self, coin_id: str, start: datetime | float, end: datetime | float) -> list[Tick]:
        return self.truth.ticks_between(coin_id, start, end)

    def market_state(self, t: datetime | float | None = None) -> MarketState:
        return self.truth.market_state(self.now_ms() if t is None else to_ms(t))

    # --- run-time control -----------------------------------------------------------------------
    @property
    def faults(self) -> FaultConfig:
        return self.config.faults

    def set_faults(self, **changes) -> None:
        """Change fault settings at run time (e.g. ``sim.set_faults(error_rate=0.2)``)."""
        with self._lock:
            self.config.faults.update(**changes)
            if "seed" in changes:
                self._fault_keys = seed_keys(self.config.faults.seed, len(self.universe), S_FAULTS)

    def force(
        self, kind: int | str, count: int = 1, *, retry_after: int | None = None, paths: str | None = None
    ) -> None:
        """Answer the next ``count`` API requests with ``kind``: an HTTP status (429, 500, 503...),
        ``"timeout"``, ``"truncate"``, ``"html429"`` (a CDN HTML page) or ``"garbage"`` (not JSON).
        ``paths``: only requests whose path contains this string."""
        with self._lock:
            for _ in range(count):
                self._forced.append({"kind": kind, "retry_after": retry_after, "paths": paths})

    def forced_count(self) -> int:
        """How many forced faults are still queued."""
        return len(self._forced)

    def take_forced(self, path: str) -> dict | None:
        """The first queued forced fault that applies to ``path``, removed from the queue."""
        with self._lock:
            for idx, item in enumerate(self._forced):
                if item["paths"] is None or item["paths"] in path:
                    del self._forced[idx]
                    return item
        return None

    def revoke_key(self, key: str, status: int = 401) -> None:
        """From now on, requests with ``key`` get ``status`` (401 or 403) and the real error body."""
        self._revoked[key] = status

    def state(self) -> dict:
        return {
            "now": self.now_ms() / 1000,
            "now_iso": iso_ms(self.now_ms()),
            "coins": len(self.universe),
            "seed": self.config.seed,
            "plan": self.config.plan,
            "rate_limit_per_min": self.config.rate_limit_per_min,
            "rate_limit_window": self.config.rate_limit_window,
            "faults": asdict(self.config.faults),
            "stats": dict(self.stats),
        }

    # --- fault decisions: deterministic hashes of the fault seed ---------------------------------
    def request_u(self, seq: int, kind: int) -> float:
        """Uniform draw in [0, 1) for request number ``seq`` and request-level fault ``kind``."""
        key = np.array([self._fault_keys[0] ^ np.uint64(0xA5A5A5A5)], dtype=np.uint64)
        return float(uniform(key, np.array([seq * 16 + kind]))[0])

    def record_u(self, i: np.ndarray | int, counter: np.ndarray | int, kind: int) -> np.ndarray:
        """Uniform draws per coin ``i`` and tick/point ``counter`` for record-level fault ``kind``."""
        i = np.asarray(i, dtype=np.int64)
        c = np.asarray(counter, dtype=np.int64)
        return uniform(self._fault_keys[i], c * 16 + kind)

    def log_fault(self, kind: str, path: str, coin: str | None = None, t_ms: int | None = None) -> None:
        self.stats[f"fault_{kind}"] += 1
        self.fault_log.append({"kind": kind, "path": path, "coin": coin, "t_ms": t_ms})
