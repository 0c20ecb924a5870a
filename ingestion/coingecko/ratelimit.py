"""One upstream rate budget shared by every worker process and machine (Redis, atomic Lua).

A sliding-window log: a call is granted only if fewer than ``limit`` calls were granted in the last
``window`` seconds (by the Redis server's clock, so machines with skewed clocks agree). A caller
that is refused waits the exact time until the oldest grant leaves the window, then tries again:
N workers together never exceed the plan's calls per window. A 429 from upstream can pause every
worker at once (``pause``).

Priority: a budget with a ``reserve`` is granted a call only while fewer than ``limit - reserve``
calls were granted in the window, so the last ``reserve`` calls of every window stay free for the
callers without one. The history job (``ingestion.history``) takes its calls this way; the live
refresh takes them without a reserve. As long as the live work needs at most ``reserve`` calls
per window, it never waits because of history (docs/ingestion.md, "History").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

from .errors import BudgetTimeout

logger = logging.getLogger(__name__)

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {pause, now} end
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local allowed = tonumber(ARGV[1])
local used = redis.call('ZCARD', KEYS[1])
if used < allowed then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return {0, now}
end
-- the grant whose expiry brings the count below ``allowed`` (the oldest one without a reserve)
local idx = used - math.max(allowed, 1)
local oldest = redis.call('ZRANGE', KEYS[1], idx, idx, 'WITHSCORES')
return {math.max(1, tonumber(oldest[2]) + window - now + 1), now}
"""

_PAUSE = """
local current = redis.call('PTTL', KEYS[1])
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 1
"""


class RateBudget:
    """Shared budget of ``limit`` calls per ``window`` seconds under the Redis key ``key``.

    ``acquire()`` blocks until a call may be made (at most ``max_wait`` seconds, else
    ``BudgetTimeout``) and returns the grant time in epoch milliseconds (Redis clock).
    ``reserve``: calls per window this caller leaves to callers without a reserve (it is granted
    only while fewer than ``limit - reserve`` calls were granted in the window; 0 = no priority).
    ``redis=None`` keeps the budget in this process only (tests/tools; not shared).
    """

    def __init__(
        self,
        redis=None,
        *,
        limit: int,
        window: float = 60.0,
        key: str = "cg:budget",
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        reserve: int = 0,
    ):
        if limit <= 0:
            raise ValueError("limit must be positive")
        if not 0 <= reserve < limit:
            raise ValueError("reserve must be at least 0 and below the limit")
        self.redis = redis
        self.limit = int(limit)
        self.window = float(window)
        self.key = key
        self.pause_key = f"{key}:pause"
        self.max_wait = max_wait
        self.reserve = int(reserve)
        self._sleep = sleep
        self._script = redis.register_script(_ACQUIRE) if redis is not None else None
        self._pause_script = redis.register_script(_PAUSE) if redis is not None else None
        self._local: deque[float] = deque()
        self._local_pause_until = 0.0
        self._lock = threading.Lock()
        self.waited_seconds = 0.0  # total time this instance spent waiting for budget

    def try_acquire(self) -> tuple[float, int]:
        """One attempt: (seconds to wait, grant/now ms). 0 seconds means granted."""
        if self._script is not None:
            wait_ms, now_ms = self._script(
                keys=[self.key, self.pause_key],
                args=[self.allowed, int(self.window * 1000), uuid.uuid4().hex],
            )
            return int(wait_ms) / 1000.0, int(now_ms)
        with self._lock:
            now = time.time()
            if now < self._local_pause_until:
                return self._local_pause_until - now, int(now * 1000)
            while self._local and self._local[0] <= now - self.window:
                self._local.popleft()
            if len(self._local) < self.allowed:
                self._local.append(now)
                return 0.0, int(now * 1000)
            oldest = self._local[len(self._local) - self.allowed]
            return max(0.001, oldest + self.window - now), int(now * 1000)

    @property
    def allowed(self) -> int:
        """Calls per window this caller may be granted: the limit less its reserve."""
        return max(1, self.limit - self.reserve)

    def acquire(self, max_wait: float | None = None) -> int:
        limit = self.max_wait if max_wait is None else max_wait
        deadline = time.monotonic() + limit
        while True:
            wait, now_ms = self.try_acquire()
            if wait <= 0:
                return now_ms
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BudgetTimeout(
                    f"no upstream budget within {limit:.1f}s ({self.allowed}/{self.window:g}s "
                    f"of {self.limit}, {self.reserve} reserved)"
                )
            pause = min(wait, remaining)
            self.waited_seconds += pause
            self._sleep(pause)

    def pause(self, seconds: float) -> None:
        """Stop every worker sharing this budget from calling for ``seconds`` (after a 429)."""
        ms = max(1, int(seconds * 1000))
        if self._pause_script is not None:
            self._pause_script(keys=[self.pause_key], args=[ms])
        else:
            with self._lock:
                self._local_pause_until = max(self._local_pause_until, time.time() + seconds)

    def in_window(self) -> int:
        """Calls granted in the current window (approximate for the local budget)."""
        if self.redis is not None:
            t = self.redis.time()
            now_ms = t[0] * 1000 + t[1] // 1000
            return int(self.redis.zcount(self.key, now_ms - int(self.window * 1000) + 1, "+inf"))
        return len(self._local)

    def paused_for(self) -> float:
        """Seconds every worker still holds off after an upstream 429 (0: not paused)."""
        if self.redis is not None:
            return max(0, int(self.redis.pttl(self.pause_key))) / 1000
        return max(0.0, self._local_pause_until - time.time())

    def reset(self) -> None:
        if self.redis is not None:
            self.redis.delete(self.key, self.pause_key)
        self._local.clear()
        self._local_pause_until = 0.0
