"""The API-key cache: what the public API knows about a key id without asking PostgreSQL.

Lookup (warm path = zero SQL queries, ~zero Redis round trips)::

    process-local dict (TTL ≤ 1 s)  ->  Redis "<prefix>:acct:key:<key_id>" (TTL 300 s)  ->  PostgreSQL

Every change of a key (create, revoke, rotate, edit) bumps ``ApiKey.version`` under a row lock and,
after commit, *writes* the new state into Redis (:func:`publish`) with a compare-version script
(never a DEL), so a process that read the database before the change cannot put a stale entry back.
Other web processes see the change when their local entry expires: within ``KEY_LOCAL_CACHE_TTL``
(1 s). Expiry needs no invalidation: ``expires_at`` travels with the principal and is checked on
every request. A refresh also records, at most once per ``LAST_USED_INTERVAL`` per key and process,
when the key was last used (the hash ``<prefix>:acct:lastused``, flushed to the database by a task).

Redis is the ``"default"`` connection of :mod:`apiplatform.redis_access` (its client, its back-off
and its key rule): while Redis is unreachable lookups read the database directly, one warning per
outage.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from accounts.keyformat import KIND_SECRET, ParsedKey, hash_key
from accounts.models import ApiKey
from accounts.origins import NO_ORIGINS, OriginRules, rules
from accounts.principal import KeyPrincipal
from apiplatform import redis_access

logger = logging.getLogger(__name__)


# --- cached entries ----------
@dataclass(frozen=True, slots=True)
class CachedKey:
    """What the cache holds per key id: the principal plus what is needed to verify and judge it."""

    found: bool
    secret_hash: str = ""
    revoked: bool = False
    expires_ts: float | None = None
    principal: KeyPrincipal | None = None
    networks: tuple[Any, ...] = field(default=())
    origins: OriginRules = NO_ORIGINS


MISSING = CachedKey(found=False)


def _entry_to_json(entry: CachedKey) -> str:
    if not entry.found:
        return '{"found":false}'
    p = entry.principal
    assert p is not None
    return json.dumps(
        {
            "found": True,
            "h": entry.secret_hash,
            "r": entry.revoked,
            "x": entry.expires_ts,
            "k": p.key_id,
            "p": p.prefix,
            "n": p.name,
            "o": p.organization_id,
            "s": p.organization_slug,
            "sc": sorted(p.scopes),
            "e": p.environment,
            "ip": list(p.allowed_ips),
            "t": p.kind,
            "og": list(p.allowed_origins),
        },
        separators=(",", ":"),
    )


def _entry_from_json(text: str) -> CachedKey:
    data = json.loads(text)
    if not data.get("found"):
        return MISSING
    expires_ts = data["x"]
    principal = KeyPrincipal(
        key_id=data["k"],
        prefix=data["p"],
        name=data["n"],
        organization_id=data["o"],
        organization_slug=data["s"],
        scopes=frozenset(data["sc"]),
        environment=data["e"],
        expires_at=datetime.fromtimestamp(expires_ts, tz=UTC) if expires_ts is not None else None,
        allowed_ips=tuple(data["ip"]),
        # Entries written before browser keys existed carry neither: they are secret keys.
        kind=data.get("t", KIND_SECRET),
        allowed_origins=tuple(data.get("og", ())),
    )
    return CachedKey(
        found=True,
        secret_hash=data["h"],
        revoked=data["r"],
        expires_ts=expires_ts,
        principal=principal,
        networks=_networks(principal.allowed_ips),
        origins=rules(principal.allowed_origins),
    )


def _networks(cidrs) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def entry_from_row(row) -> CachedKey:
    """Build the cache entry from an ApiKey row (with ``organization`` selected)."""
    expires_ts = row.expires_at.timestamp() if row.expires_at else None
    principal = KeyPrincipal(
        key_id=row.key_id,
        prefix=row.prefix,
        name=row.name,
        organization_id=row.organization_id,
        organization_slug=row.organization.slug,
        scopes=frozenset(row.scopes),
        environment=row.environment,
        expires_at=row.expires_at,
        allowed_ips=tuple(row.allowed_ips),
        kind=row.kind,
        allowed_origins=tuple(row.allowed_origins),
    )
    return CachedKey(
        found=True,
        secret_hash=row.secret_hash,
        revoked=row.revoked_at is not None,
        expires_ts=expires_ts,
        principal=principal,
        networks=_networks(row.allowed_ips),
        origins=rules(row.allowed_origins),
    )


# --- Redis ----------
def entry_key(key_id: str) -> str:
    """Redis key of a key id's cache entry: ``<prefix>:acct:key:<key_id>``."""
    return redis_access.key("acct", "key", key_id)


def last_used_key() -> str:
    """Redis hash of unflushed "last used" times (key id -> epoch seconds): ``<prefix>:acct:lastused``."""
    return redis_access.key("acct", "lastused")


# SET the entry unless Redis already holds a newer version. Values are "<version>|<json>".
_SET_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)|'))
  if v and v > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def _set_if_newer(client_or_pipe, key_id: str, version: int, entry: CachedKey) -> None:
    ttl = int(settings.ACCOUNTS["KEY_REDIS_CACHE_TTL"])
    client_or_pipe.eval(_SET_IF_NEWER, 1, entry_key(key_id), version, _entry_to_json(entry), ttl)


# --- the process-local cache ----------
# key_id -> (monotonic deadline, CachedKey). Plain dict operations are atomic under the GIL.
_local: dict[str, tuple[float, CachedKey]] = {}
# key_id -> monotonic time of the last "last used" write from this process.
_last_used_written: dict[str, float] = {}
_LOCAL_MAX_ENTRIES = 100_000


def clear_local_cache() -> None:
    """Forget everything cached in this process (tests, benchmarks). The Redis back-off is
    :func:`apiplatform.redis_access.reset_all`'s."""
    _local.clear()
    _last_used_written.clear()


def forget_locally(key_id: str) -> None:
    _local.pop(key_id, None)


def _load_from_db(key_id: str) -> tuple[int, CachedKey]:
    row = ApiKey.objects.select_related("organization").filter(key_id=key_id).first()
    if row is None:
        return 0, MISSING
    return row.version, entry_from_row(row)


def _fresh(key_id: str, now: float) -> CachedKey | None:
    hit = _local.get(key_id)
    return hit[1] if hit is not None and hit[0] > now else None


def is_warm(key_id: str) -> bool:
    """True if :func:`lookup` would answer ``key_id`` from this process, without any I/O."""
    return _fresh(key_id, time.monotonic()) is not None


def known_valid(parsed: ParsedKey) -> bool:
    """True if this process's cache holds an entry, fresh or past its local TTL, showing this exact
    key (secret included) as active. No I/O. Used to let keys in use from an address that is over
    its failure budget (accounts/failures.py) refresh their entry: a forger never passes the secret
    comparison. Expiry and revocation are still decided by the refresh that follows."""
    hit = _local.get(parsed.key_id)
    if hit is None:
        return False
    entry = hit[1]
    return (
        entry.found
        and not entry.revoked
        and entry.principal is not None
        and entry.principal.environment == parsed.environment
        and entry.principal.kind == parsed.kind
        and hmac.compare_digest(hash_key(parsed.full), entry.secret_hash)
    )


def lookup(key_id: str) -> CachedKey:
    """The cache entry for ``key_id``: local (no I/O) -> Redis (1 round trip) -> database.

    While the ``"default"`` Redis connection backs off (redis_access), the database is read directly."""
    now = time.monotonic()
    fresh = _fresh(key_id, now)
    if fresh is not None:
        return fresh

    cfg = settings.ACCOUNTS
    record_use = now - _last_used_written.get(key_id, -1e18) >= cfg["LAST_USED_INTERVAL"]
    entry: CachedKey | None = None
    try:
        with redis_access.breaker("default").guard():
            client = redis_access.client("default")
            if record_use:
                # Piggy-back the throttled "last used" write on the refresh: still one round trip.
                pipe = client.pipeline(transaction=False)
                pipe.get(entry_key(key_id))
                pipe.hset(last_used_key(), key_id, int(time.time()))
                raw = pipe.execute()[0]
            else:
                raw = client.get(entry_key(key_id))
            if raw is not None:
                entry = _entry_from_json(raw.decode().split("|", 1)[1])
            else:
                version, entry = _load_from_db(key_id)
                _set_if_newer(client, key_id, version, entry)
    except redis_access.ERRORS:
        _version, entry = _load_from_db(key_id)
        record_use = False
    if not entry.found:
        record_use = False
    if record_use:
        _last_used_written[key_id] = now
    if len(_local) >= _LOCAL_MAX_ENTRIES:
        _local.clear()
    _local[key_id] = (now + float(cfg["KEY_LOCAL_CACHE_TTL"]), entry)
    return entry


def publish(key_id: str) -> None:
    """Write the database state of ``key_id`` into Redis (after a change has committed).

    A revocation is worth waiting for: this tries Redis three times even while the connection backs
    off, and reports each failure and a success to its breaker."""
    _local.pop(key_id, None)
    version, entry = _load_from_db(key_id)
    breaker = redis_access.breaker("default")
    for attempt in range(3):
        try:
            _set_if_newer(redis_access.client("default"), key_id, version, entry)
        except redis_access.ERRORS as exc:
            breaker.failed(exc)
            time.sleep(0.2 * (attempt + 1))
        else:
            breaker.succeeded()
            return
    # Other processes may serve the old state until the Redis entry's TTL (KEY_REDIS_CACHE_TTL) ends.
    logger.error("could not publish API key %s state to Redis after 3 attempts", key_id)


def publish_deleted(key_id: str, version: int) -> None:
    """After a key's row was deleted (its organization went, e.g. an expired sign-up): write "no
    such key" at a version above the row's last one, so no process keeps serving the old entry and
    none can put it back (a plain DEL would let a process that read the row before the delete do so)."""
    _local.pop(key_id, None)
    try:
        _set_if_newer(redis_access.client("default"), key_id, version, MISSING)
    except redis_access.ERRORS as exc:
        redis_access.breaker("default").failed(exc)
        logger.error("could not publish the deletion of API key %s to Redis", key_id)


# --- last used ----------
def last_used_from_redis(key_ids: list[str]) -> dict[str, datetime]:
    """Unflushed "last used" times recorded in Redis (one HMGET), for the management API."""
    if not key_ids:
        return {}
    try:
        with redis_access.breaker("default").guard():
            values = redis_access.client("default").hmget(last_used_key(), key_ids)
    except redis_access.ERRORS:
        return {}
    return {
        key_id: datetime.fromtimestamp(int(v), tz=UTC) for key_id, v in zip(key_ids, values, strict=True) if v
    }
