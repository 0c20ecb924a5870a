"""The response cache as the public API's views use it: one mixin around ``caching.lookup`` / ``store``.

A view parses its parameters, then asks :meth:`ResponseCacheMixin.cached` for the answer: on a hit
(entry present and computed from the current data version) the stored body, ETag and Cache-Control
come back without running ``compute``; on a miss ``compute()`` builds the answer (a
:class:`~marketdata.api.caching.Cached`, see :func:`answer`) and it is stored for the next request,
for ``LONG_TTL`` when it may be cached long (closed candles only) and ``SHORT_TTL`` otherwise. The view
then renders it with ``caching.respond`` (200 or 304, ETag, Cache-Control, Vary).
"""

from __future__ import annotations

from collections.abc import Callable

from marketdata.api import caching


def answer(body: bytes, *, long: bool = False) -> caching.Cached:
    """A computed answer: ``body`` with its strong ETag and the long (closed data) or short
    Cache-Control."""
    return caching.Cached(body, caching.etag_of(body), caching.cache_control(long))


def ttl_of(cached: caching.Cached) -> int:
    """Redis TTL of an entry: long only for answers that clients may cache long too."""
    return caching.LONG_TTL if cached.cache_control == caching.cache_control(True) else caching.SHORT_TTL


class ResponseCacheMixin:
    """Views whose answers live in the shared response cache.

    ``cache_name`` names the entries (``…:resp:<cache_name>:<digest of parts>``); ``parts`` are the
    endpoint's normalised parameters, ``version_key`` the data version the answer depends on
    (``marketdata.cache.candles_key`` / ``snapshots_key``, ``caching.screener_key``).
    """

    cache_name: str

    def cached(
        self, *, parts: tuple, version_key: str, compute: Callable[[], caching.Cached]
    ) -> caching.Cached:
        version, hit = caching.lookup(self.cache_name, parts, version_key)
        if hit is None:
            hit = compute()
            caching.store(self.cache_name, parts, version, hit, ttl_of(hit))
        return hit
