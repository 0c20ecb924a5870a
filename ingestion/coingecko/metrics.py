"""Counters of upstream calls: kept for this client instance and, with Redis, shared by all workers.

Two Redis hashes: ``<key>`` holds the totals of :data:`COUNTERS`; ``<key>:calls`` holds, per
CoinGecko endpoint template (``/coins/{id}/ohlc``, never a coin id) and API-key fingerprint (a short
hash, never the key), the attempts, retries, 429s and a latency histogram (fields
``<name>|<endpoint>|<key fingerprint>``; the histogram: ``lat<i>|...`` per bucket of
:data:`LATENCY_BUCKETS` and ``latsum|...``). ``GET /metrics`` exposes both (apiplatform.metrics).
"""

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


#: Upper bounds (seconds) of the upstream latency histogram; the last bucket is +Inf.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Per endpoint and key: attempts sent, attempts after the first, 429 answers.
CALL_COUNTERS = ("calls", "retries", "rate_limited")


def latency_bucket(seconds: float) -> int:
    """Index of the first bucket whose bound holds ``seconds`` (len(LATENCY_BUCKETS): +Inf)."""
    for i, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return i
    return len(LATENCY_BUCKETS)


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

    @property
    def calls_key(self) -> str:
        return f"{self.key}:calls"

    def attempt(self, *, endpoint: str, key: str, status: int | str, latency: float, attempt: int) -> None:
        """One HTTP attempt answered (or failed) after ``latency`` seconds: one pipelined round trip
        that counts it by endpoint and key fingerprint (``key`` is a fingerprint, never a key)."""
        if self.redis is None:
            return
        suffix = f"|{endpoint}|{key}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.calls_key, "calls" + suffix, 1)
            if attempt > 1:
                pipe.hincrby(self.calls_key, "retries" + suffix, 1)
            if status == 429:
                pipe.hincrby(self.calls_key, "rate_limited" + suffix, 1)
            pipe.hincrby(self.calls_key, f"lat{latency_bucket(latency)}{suffix}", 1)
            pipe.hincrbyfloat(self.calls_key, "latsum" + suffix, latency)
            pipe.execute()
        except Exception:  # metrics must never break a call
            logger.warning("could not update shared CoinGecko call metrics", exc_info=True)

    def shared_calls(self) -> dict[tuple[str, str], dict[str, float]]:
        """(endpoint, key fingerprint) -> {"calls", "retries", "rate_limited", "lat<i>", "latsum"}."""
        if self.redis is None:
            return {}
        out: dict[tuple[str, str], dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.calls_key).items():
            text = field.decode() if isinstance(field, bytes) else field
            name, endpoint, fingerprint = text.split("|", 2)
            out.setdefault((endpoint, fingerprint), {})[name] = float(value)
        return out

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
            self.redis.delete(self.key, self.calls_key)
