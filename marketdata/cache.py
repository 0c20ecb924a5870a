"""Version counters that invalidate cached API responses when candles or snapshots change.

Every write of the candle write path that changes rows bumps (INCR) one counter per changed
(coin, timeframe) after its transaction commits; snapshot writes bump one global counter. Readers
put the current version(s) into their cache keys, so a new candle makes every older cached answer
unreachable at once (they expire by TTL) without scanning or deleting keys.

Keys (Redis at ``REDIS_URL``, prefix ``CACHE_KEY_PREFIX``): ``<prefix>:ver:candles:<coin_id>:<tf>``
and ``<prefix>:ver:snapshots``. A missing key reads as version 0. Bumps are pipelined: one round
trip however many series changed. If Redis is down a bump is logged and skipped (the write itself
has committed); readers should keep TTLs short enough to bound staleness in that case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client  # one connection pool per process
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def _prefix() -> str:
    return settings.CACHES["default"].get("KEY_PREFIX") or "cs"


def candles_key(coin_id: int, timeframe: str) -> str:
    return f"{_prefix()}:ver:candles:{coin_id}:{timeframe}"


def snapshots_key() -> str:
    return f"{_prefix()}:ver:snapshots"


def candles_changed(
    *,
    coin_ids: Iterable[int] = (),
    timeframes: Iterable[str] = (),
    pairs: Iterable[tuple[int, str]] = (),
) -> None:
    """Bump the version of every (coin, timeframe) in ``coin_ids x timeframes`` and in ``pairs``."""
    keys = {candles_key(c, tf) for c in coin_ids for tf in timeframes}
    keys.update(candles_key(c, tf) for c, tf in pairs)
    _bump(sorted(keys))


def snapshots_changed() -> None:
    """Bump the global snapshot version (latest prices, markets, rankings)."""
    _bump([snapshots_key()])


def _bump(keys: list[str]) -> None:
    if not keys:
        return
    try:
        pipe = client().pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
        pipe.execute()
    except redis.RedisError:
        logger.exception("cache version bump failed for %d keys", len(keys))


def candles_version(coin_id: int, timeframe: str) -> int:
    """Current version of one series (0 if never bumped)."""
    return candles_versions([(coin_id, timeframe)])[0]


def candles_versions(pairs: list[tuple[int, str]]) -> list[int]:
    """Current versions of several series in one round trip (MGET)."""
    if not pairs:
        return []
    values = client().mget([candles_key(c, tf) for c, tf in pairs])
    return [int(v) if v is not None else 0 for v in values]


def snapshots_version() -> int:
    value = client().get(snapshots_key())
    return int(value) if value is not None else 0
