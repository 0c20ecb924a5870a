"""The one Redis access layer: client factory, back-off policy and key-prefix rule.

Every part of the project that talks to Redis directly (the gateway, the API-key cache, the
failure budget, the response cache and its version counters, the CoinGecko budget and counters)
goes through this module:

* :func:`client` — one connection pool per process and per named connection. ``"default"`` is
  ``REDIS_URL`` with ``REDIS_TIMEOUT``; ``"gateway"`` is ``GATEWAY_REDIS_URL`` with
  ``GATEWAY_REDIS_TIMEOUT`` and decoded replies (the gate script returns one flat string);
  ``"ingestion"`` is ``REDIS_URL`` with ``REDIS_INGESTION_TIMEOUT`` (workers may wait longer than a
  request may). A changed URL setting (tests) builds a new pool; a forked process builds its own.
* :class:`Breaker` — the back-off policy: after a failure a connection is not tried again for
  ``REDIS_BACKOFF_SECONDS`` (``GATEWAY_REDIS_RETRY_SECONDS`` for the gateway), so an outage costs
  one timeout per back-off period instead of one per request, and the log carries ONE warning per
  outage (no traceback) and one line when Redis answers again. Besides one breaker per connection
  there is ``"cache"``: Redis reached through the Django cache (django-ratelimit's counters), whose
  client Django makes.
* :func:`key` — the key-prefix rule: ``<REDIS_KEY_PREFIX>:<namespace>:<part>...``. Namespaces in
  use: ``gw`` (limits, quota, metering: billing.redis_layout), ``acct`` (API-key cache), ``ver``
  (series versions), ``resp`` (response cache), ``cg`` (CoinGecko budget and counters).

Callers keep their own Lua scripts and data layout; this module owns only the connection, the
failure policy and the naming rule.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

#: What a Redis failure looks like to callers (``OSError``: a socket error redis-py did not wrap).
ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


def key(namespace: str, *parts: object) -> str:
    """``<REDIS_KEY_PREFIX>:<namespace>:<part>:...`` — the one naming rule for project keys."""
    return ":".join([settings.REDIS_KEY_PREFIX, namespace, *map(str, parts)])


class BackendDown(redis.ConnectionError):
    """Raised instead of trying Redis while its connection is backing off."""


class Breaker:
    """Back-off after a failure: ``available()`` is False for ``seconds()`` after ``failed()``.

    Logs one warning when an outage starts (no traceback) and one info line when a call succeeds
    again. Cheap on the happy path: one ``time.monotonic()`` comparison."""

    def __init__(self, name: str, seconds: Callable[[], float]) -> None:
        self.name = name
        self._seconds = seconds
        self.down_until = 0.0
        self.down = False

    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    def failed(self, exc: BaseException) -> None:
        if not self.down:
            logger.warning(
                "Redis unavailable (%s): %s: %s; backing off %.1f s at a time until it answers",
                self.name,
                type(exc).__name__,
                exc,
                self._seconds(),
            )
        self.down = True
        self.down_until = time.monotonic() + self._seconds()

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            logger.info("Redis (%s) reachable again", self.name)

    def reset(self) -> None:
        self.down_until = 0.0
        self.down = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): ...`` — raises :class:`BackendDown` during the back-off, records a
        Redis failure (and re-raises it), and a success after an outage."""
        if not self.available():
            raise BackendDown(f"Redis ({self.name}) backing off")
        try:
            yield
        except ERRORS as exc:
            self.failed(exc)
            raise
        if self.down:
            self.succeeded()


@dataclass
class Connection:
    """A named Redis connection: where (settings names), how (decoded or not), and its breaker."""

    name: str
    url_setting: str
    timeout_setting: str
    backoff_setting: str
    decode_responses: bool = False
    breaker: Breaker = field(init=False)
    _client: redis.Redis | None = field(default=None, init=False, repr=False)
    _made_for: tuple[str, float, int] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.breaker = Breaker(self.name, lambda: float(getattr(settings, self.backoff_setting)))

    @property
    def url(self) -> str:
        return str(getattr(settings, self.url_setting))

    def client(self) -> redis.Redis:
        """This process's client (one pool), rebuilt when the URL or timeout setting changed."""
        timeout = float(getattr(settings, self.timeout_setting))
        made_for = (self.url, timeout, os.getpid())
        current = self._client
        if current is None or self._made_for != made_for:
            with self._lock:
                if self._client is None or self._made_for != made_for:
                    self._client = redis.Redis.from_url(
                        made_for[0],
                        socket_timeout=timeout,
                        socket_connect_timeout=timeout,
                        decode_responses=self.decode_responses,
                    )
                    self._made_for = made_for
                current = self._client
        return current

    def reset(self) -> None:
        """Forget the client and any back-off (tests, benchmarks)."""
        with self._lock:
            self._client = None
            self._made_for = None
        self.breaker.reset()


_CONNECTIONS: dict[str, Connection] = {
    "default": Connection("default", "REDIS_URL", "REDIS_TIMEOUT", "REDIS_BACKOFF_SECONDS"),
    "ingestion": Connection("ingestion", "REDIS_URL", "REDIS_INGESTION_TIMEOUT", "REDIS_BACKOFF_SECONDS"),
    "gateway": Connection(
        "gateway",
        "GATEWAY_REDIS_URL",
        "GATEWAY_REDIS_TIMEOUT",
        "GATEWAY_REDIS_RETRY_SECONDS",
        decode_responses=True,
    ),
}


#: Breakers of Redis clients this module does not make: ``"cache"`` is the Django cache
#: (``CACHES["default"]``; django-ratelimit's counters, accounts.failures).
_BREAKERS: dict[str, Breaker] = {
    "cache": Breaker("cache", lambda: float(settings.REDIS_BACKOFF_SECONDS)),
}


def connection_names() -> tuple[str, ...]:
    """The named connections this module makes (``manage.py doctor`` checks each)."""
    return tuple(_CONNECTIONS)


def connection(name: str = "default") -> Connection:
    return _CONNECTIONS[name]


def client(name: str = "default") -> redis.Redis:
    """The process's client for the named connection (see the module docstring)."""
    return _CONNECTIONS[name].client()


def breaker(name: str = "default") -> Breaker:
    """The back-off of a named connection, or of ``"cache"`` (the Django cache)."""
    conn = _CONNECTIONS.get(name)
    return conn.breaker if conn is not None else _BREAKERS[name]


_SCRIPTS: dict[str, redis.commands.core.Script] = {}


def script(source: str, redis_client: redis.Redis) -> redis.commands.core.Script:
    """The Lua ``source`` registered on ``redis_client`` (once per client: the SHA is computed once,
    and a client rebuilt after a settings change or a fork registers it again)."""
    registered = _SCRIPTS.get(source)
    if registered is None or registered.registered_client is not redis_client:
        registered = _SCRIPTS[source] = redis_client.register_script(source)
    return registered


def reset_all() -> None:
    """Forget every client and back-off (tests: as in a freshly started process)."""
    for conn in _CONNECTIONS.values():
        conn.reset()
    for other in _BREAKERS.values():
        other.reset()
