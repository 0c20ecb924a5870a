"""Counters of upstream calls: kept for this client instance and, with Redis, shared by all workers."""

from __future__ import annotations

import logging
import threading
from collections import Counter

logger = logging.getLogger(__name__)

COUNTERS = (
    "calls",  # HTTP requests sent (every attempt)
    "retries",  # attempts after the first
    "rate_limited",  # 429 answers
    "failures",  # logical calls that finally raised
    "server_errors",  # 5xx answers
    "timeouts",  # timeouts and connection errors
    "bad_payloads",  # bodies that were not valid JSON
    "keys_disabled",  # keys taken out of rotation after 401/403
    "records_rejected",  # records rejected by validation
    "records_ok",  # records parsed successfully
)


class ClientMetrics:
    """``snapshot()`` -> this instance's counts; ``shared()`` -> counts of every process (Redis hash)."""

    def __init__(self, redis=None, key: str = "cg:metrics"):
        self.redis = redis
        self.key = key
        self._local: Counter[str] = Counter()
        self._lock = threading.Lock()

    def incr(self, name: str, amount: int = 1) -> None:
        if amount == 0:
            return
        with self._lock:
            self._local[name] += amount
        if self.redis is not None:
            try:
                self.redis.hincrby(self.key, name, amount)
            except Exception:  # metrics must never break a call
                logger.warning("could not update shared CoinGecko metrics", exc_info=True)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: int(self._local.get(name, 0)) for name in COUNTERS} | {
                k: int(v) for k, v in self._local.items() if k not in COUNTERS
            }

    def shared(self) -> dict[str, int]:
        if self.redis is None:
            return self.snapshot()
        raw = self.redis.hgetall(self.key)
        out = dict.fromkeys(COUNTERS, 0)
        for k, v in raw.items():
            out[k.decode() if isinstance(k, bytes) else k] = int(v)
        return out

    def reset(self) -> None:
        with self._lock:
            self._local.clear()
        if self.redis is not None:
            self.redis.delete(self.key)
