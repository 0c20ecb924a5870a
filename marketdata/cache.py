"""Version counters that invalidate cached API responses when candles or snapshots change.

Every write of the candle write path that changes rows bumps (INCR) one counter per changed
(coin, timeframe) after its transaction commits; snapshot writes bump one global counter. Readers
put the current version(s) into their cache keys, so a new candle makes every older cached answer
unreachable at once (they expire by TTL) without scanning or deleting keys.

Keys (``apiplatform.redis_access.key``, namespace ``ver``): ``<prefix>:ver:candles:<coin_id>:<tf>``,
``<prefix>:ver:snapshots`` (also bumped by new exchange rates) and ``<prefix>:ver:global``. A
missing key reads as version 0. Bumps are pipelined: one round trip however many series changed.
Redis is the ``"default"`` connection of
:mod:`apiplatform.redis_access`: if it is down (one warning per outage) or backing off, a bump is
skipped (the write itself has committed); readers keep TTLs short enough to bound staleness then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from apiplatform import redis_access


def candles_key(coin_id: int, timeframe: str) -> str:
    return redis_access.key("ver", "candles", coin_id, timeframe)


def snapshots_key() -> str:
    return redis_access.key("ver", "snapshots")


def global_key() -> str:
    return redis_access.key("ver", "global")


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


def global_changed() -> None:
    """Bump the version of the global market snapshots (``GET /v1/global``)."""
    _bump([global_key()])


def _bump(keys: list[str]) -> None:
    if not keys:
        return
    # On failure the breaker has warned (once per outage); the versions stay as they were.
    with contextlib.suppress(*redis_access.ERRORS), redis_access.breaker("default").guard():
        pipe = redis_access.client("default").pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
        pipe.execute()


def candles_version(coin_id: int, timeframe: str) -> int:
    """Current version of one series (0 if never bumped)."""
    return candles_versions([(coin_id, timeframe)])[0]


def candles_versions(pairs: list[tuple[int, str]]) -> list[int]:
    """Current versions of several series in one round trip (MGET). Raises if Redis is unavailable."""
    if not pairs:
        return []
    with redis_access.breaker("default").guard():
        values = redis_access.client("default").mget([candles_key(c, tf) for c, tf in pairs])
    return [int(v) if v is not None else 0 for v in values]
