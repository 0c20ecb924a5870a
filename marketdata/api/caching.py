"""Shared response cache (Redis), strong ETags, 304s and Cache-Control for the public API.

Cache entries are keyed by the endpoint and its normalised parameters and carry the version of the
data they were computed from (``marketdata.cache``: a counter per (coin, timeframe) bumped by every
candle write, one for snapshots; here: one per screener timeframe). One ``MGET`` reads the current version
and the entry together; an entry whose version is not current is ignored and replaced, so a new
candle makes every older answer unreachable at once (no stale answer) while hits cost one Redis
round trip and no SQL. Redis is the ``"default"`` connection of :mod:`apiplatform.redis_access`:
while it is unreachable the API computes every answer, and Redis is not tried again during each
back-off period (one warning per outage, no traceback). Keys: ``<prefix>:resp:<name>:<digest>``
(entries), ``<prefix>:ver:screener:<tf>`` (screener versions; the others are marketdata.cache's).

ETags are strong: a hash of the exact JSON body (CSV answers use the hash of the JSON body plus a
``-csv`` suffix: the CSV is a deterministic function of the same data).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from django.conf import settings
from django.http import HttpResponse

from apiplatform import redis_access

LONG_MAX_AGE = 86400  # closed candles only: immutable except for rare late corrections
SHORT_MAX_AGE = 10  # ranges that include an open bucket, latest prices, screeners
LONG_TTL = 3600  # Redis TTL of entries for closed ranges
SHORT_TTL = 60  # Redis TTL of other entries (the version already invalidates them on a write)
VARY = "Accept, Authorization, X-API-Key"


@dataclass
class Cached:
    body: bytes
    etag: str
    cache_control: str


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def cache_control(long: bool) -> str:
    return f"private, max-age={LONG_MAX_AGE if long else SHORT_MAX_AGE}"


def _entry_key(name: str, parts: tuple) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()
    return redis_access.key("resp", name, digest)


def lookup(name: str, parts: tuple, version_key: str | Sequence[str]) -> tuple[str, Cached | None]:
    """Return (current version, cached answer or None) in one round trip. An answer computed from
    several series (several coins, several timeframes) passes all their version keys: its version is
    theirs together, so a write to any of them makes the entry unreachable.

    ``MARKETDATA_RESPONSE_CACHE = False`` (setting; the benchmark's "uncached" variant) turns the
    cache off: every answer is computed, as while Redis is unavailable or backing off.
    """
    if not settings.MARKETDATA_RESPONSE_CACHE:
        return "x", None
    try:
        with redis_access.breaker("default").guard():
            # the "default" connection does not decode replies: bytes, where redis-py says bytes | str
            keys = [version_key] if isinstance(version_key, str) else list(version_key)
            *versions, raw = cast(
                "list[bytes | None]",
                redis_access.client("default").mget([*keys, _entry_key(name, parts)]),
            )
    except redis_access.ERRORS:
        return "x", None
    current = ".".join((v or b"0").decode() for v in versions)
    if raw is None:
        return current, None
    try:
        entry_version, etag, control, body = raw.split(b"\n", 3)
    except ValueError:
        return current, None
    if entry_version.decode() != current:
        return current, None
    return current, Cached(body=body, etag=etag.decode(), cache_control=control.decode())


def store(name: str, parts: tuple, version: str, cached: Cached, ttl: int) -> None:
    if version == "x":
        return
    value = b"\n".join([version.encode(), cached.etag.encode(), cached.cache_control.encode(), cached.body])
    with contextlib.suppress(*redis_access.ERRORS), redis_access.breaker("default").guard():
        redis_access.client("default").set(_entry_key(name, parts), value, ex=ttl)


def if_none_match(request, etag: str) -> bool:
    header = request.META.get("HTTP_IF_NONE_MATCH")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return etag in tags or f"W/{etag}" in tags


def respond(request, cached: Cached, *, content_type: str = "application/json", etag: str | None = None):
    """200 with body, or 304 when the client's If-None-Match already has this representation."""
    etag = etag or cached.etag
    if if_none_match(request, etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(cached.body, content_type=content_type)
    response["ETag"] = etag
    response["Cache-Control"] = cached.cache_control
    response["Vary"] = VARY
    return response


def screener_key(timeframe: str) -> str:
    return redis_access.key("ver", "screener", timeframe)


def screener_changed(timeframe: str) -> None:
    """Bump the screener version of ``timeframe``; skipped while Redis is unavailable (the breaker
    warns once per outage), so cached screener answers need their TTL."""
    with contextlib.suppress(*redis_access.ERRORS), redis_access.breaker("default").guard():
        redis_access.client("default").incr(screener_key(timeframe))


# --- the views' side: one mixin around lookup / store ---------------------------------------------
def answer(body: bytes, *, long: bool = False) -> Cached:
    """A computed answer: ``body`` with its strong ETag and the long (closed data) or short
    Cache-Control."""
    return Cached(body, etag_of(body), cache_control(long))


def ttl_of(cached: Cached) -> int:
    """Redis TTL of an entry: long only for answers that clients may cache long too."""
    return LONG_TTL if cached.cache_control == cache_control(True) else SHORT_TTL


class ResponseCacheMixin:
    """Views whose answers live in the shared response cache.

    A view parses its parameters, then asks :meth:`cached` for the answer: on a hit (entry present
    and computed from the current data version) the stored body, ETag and Cache-Control come back
    without running ``compute``; on a miss ``compute()`` builds the answer (see :func:`answer`) and
    it is stored for the next request (:func:`ttl_of`). The view renders it with :func:`respond`.

    ``cache_name`` names the entries (``…:resp:<cache_name>:<digest of parts>``); ``parts`` are the
    endpoint's normalised parameters, ``version_key`` the data version the answer depends on
    (``marketdata.cache.candles_key`` / ``snapshots_key``, :func:`screener_key`; or several keys).
    """

    cache_name: str

    def cached(
        self, *, parts: tuple, version_key: str | Sequence[str], compute: Callable[[], Cached]
    ) -> Cached:
        version, hit = lookup(self.cache_name, parts, version_key)
        if hit is None:
            hit = compute()
            store(self.cache_name, parts, version, hit, ttl_of(hit))
        return hit
