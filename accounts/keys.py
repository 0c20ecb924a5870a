"""API keys: format, hashing, the authenticated principal and its warm-path cache.

Key format (see docs/accounts.md)::

    cs_live_<key_id:12>_<secret:32><checksum:6>        e.g. cs_live_4fJx0cQ2mZpA_...
    regex: ^cs_(live|test)_([0-9A-Za-z]{12})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$

* ``cs_live_`` / ``cs_test_`` — recognisable vendor prefix and the live/test environment;
* ``key_id`` — 12 random base62 characters (~71 bits), public: it is the lookup id and, with the
  prefix, the displayable ``prefix`` (``cs_live_<key_id>``) shown in lists and logs;
* ``secret`` — 32 random base62 characters (~190 bits) from :mod:`secrets`;
* ``checksum`` — CRC32 of everything before it, base62, 6 characters: typos and truncations are
  rejected without touching Redis or the database, and secret scanners can verify a match.

Only ``HMAC-SHA256(pepper, full_key)`` is stored. A fast keyed hash is the right tool for a
190-bit random secret: there is nothing to brute-force, so a slow password hash would only burn CPU
on every cache miss; the pepper (``ACCOUNTS["API_KEY_PEPPER"]``) lives outside the database, so a
leaked table alone does not even allow an offline check of candidate keys.

Lookup (warm path = zero SQL queries, ~zero Redis round trips)::

    process-local dict (TTL ≤ 1 s)  ->  Redis "cs:acct:key:<key_id>" (TTL 300 s)  ->  PostgreSQL

Every change of a key (create, revoke, rotate, edit) bumps ``ApiKey.version`` under a row lock and,
after commit, *writes* the new state into Redis with a compare-version script (never a DEL), so a
process that read the database before the change cannot put a stale entry back. Other web processes
see the change when their local entry expires: within ``KEY_LOCAL_CACHE_TTL`` (1 s). Expiry needs
no invalidation: ``expires_at`` travels with the principal and is checked on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_RE = re.compile(
    r"^cs_(live|test)_([0-9A-Za-z]{12})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})$",
)
#: For secret scanners (GitHub push protection, trufflehog, gitleaks custom rules).
SCANNER_REGEX = r"\bcs_(?:live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}\b"

#: Scopes an API key may carry. Management scopes are never granted to API keys: the management
#: API accepts only user JWTs.
SCOPE_MARKET_DATA_READ = "market_data:read"
KEY_SCOPES: tuple[str, ...] = (SCOPE_MARKET_DATA_READ,)


# --- format ----------
def _b62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _random_b62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _b62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def new_key_id() -> str:
    return _random_b62(KEY_ID_LENGTH)


def compose_key(environment: str, key_id: str, secret: str) -> str:
    body = f"cs_{environment}_{key_id}_{secret}"
    return body + checksum(body)


def generate_key(environment: str, key_id: str | None = None) -> tuple[str, str]:
    """A new ``(key_id, full_key)``. The full key is returned to the caller exactly once."""
    if environment not in ("live", "test"):
        raise ValueError("environment must be 'live' or 'test'")
    key_id = key_id or new_key_id()
    return key_id, compose_key(environment, key_id, _random_b62(SECRET_LENGTH))


def display_prefix(environment: str, key_id: str) -> str:
    return f"cs_{environment}_{key_id}"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    environment: str
    key_id: str
    full: str


class MalformedKey(ValueError):
    pass


def parse_key(raw: str) -> ParsedKey:
    """Shape + checksum check; raises :class:`MalformedKey`. No I/O."""
    match = KEY_RE.match(raw)
    if match is None:
        raise MalformedKey("not a Candlestack API key")
    environment, key_id, _secret, check = match.groups()
    if not hmac.compare_digest(checksum(raw[:-CHECKSUM_LENGTH]), check):
        raise MalformedKey("checksum mismatch")
    return ParsedKey(environment=environment, key_id=key_id, full=raw)


def _pepper() -> bytes:
    return str(settings.ACCOUNTS["API_KEY_PEPPER"]).encode()


def hash_key(full_key: str) -> str:
    return hmac.new(_pepper(), full_key.encode("ascii"), hashlib.sha256).hexdigest()


# --- the principal ----------
@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """``request.auth`` on the public API: who is calling, immutable, no database behind it."""

    key_id: str
    prefix: str
    name: str
    organization_id: int
    organization_slug: str
    scopes: frozenset[str]
    environment: str
    expires_at: datetime | None
    allowed_ips: tuple[str, ...]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_test(self) -> bool:
        return self.environment == "test"


class ApiKeyUser:
    """``request.user`` on the public API: not a database user but the key acting for its tenant.

    ``is_authenticated`` is True; ``pk``/``id`` are None (there is no user row); ``organization_id``
    and ``key_id`` identify the caller; ``principal`` is the same object as ``request.auth``.
    """

    __slots__ = ("principal",)
    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, principal: KeyPrincipal):
        self.principal = principal

    @property
    def organization_id(self) -> int:
        return self.principal.organization_id

    @property
    def key_id(self) -> str:
        return self.principal.key_id

    def __str__(self) -> str:
        return f"apikey:{self.principal.prefix}"

    def __repr__(self) -> str:
        return f"<ApiKeyUser {self.principal.prefix}>"


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


MISSING = CachedKey(found=False)
# A hash that never matches, compared against when the key id is unknown so that unknown ids and
# wrong secrets take the same code path.
_DUMMY_HASH = "0" * 64


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
    )
    return CachedKey(
        found=True,
        secret_hash=data["h"],
        revoked=data["r"],
        expires_ts=expires_ts,
        principal=principal,
        networks=_networks(principal.allowed_ips),
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
    )
    return CachedKey(
        found=True,
        secret_hash=row.secret_hash,
        revoked=row.revoked_at is not None,
        expires_ts=expires_ts,
        principal=principal,
        networks=_networks(row.allowed_ips),
    )


# --- Redis ----------
_redis_lock = threading.Lock()
# Short timeouts on the request path, and after a failure the database is used directly for
# _REDIS_BACKOFF seconds instead of waiting for Redis on every refresh.
_REDIS_TIMEOUT = 0.5
_REDIS_BACKOFF = 1.0
_redis_down_until = 0.0
_redis_client: redis.Redis | None = None
_redis_url: str | None = None

REDIS_ENTRY = "cs:acct:key:{key_id}"
REDIS_LAST_USED = "cs:acct:lastused"

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
_set_if_newer_sha: str | None = None


def get_redis() -> redis.Redis:
    """One client (connection pool) per process for the accounts Redis keys (``REDIS_URL``)."""
    global _redis_client, _redis_url
    url = settings.REDIS_URL
    if _redis_client is None or _redis_url != url:
        with _redis_lock:
            if _redis_client is None or _redis_url != url:
                _redis_client = redis.Redis.from_url(
                    url, socket_connect_timeout=_REDIS_TIMEOUT, socket_timeout=_REDIS_TIMEOUT
                )
                _redis_url = url
    return _redis_client


def _set_if_newer(client_or_pipe, key_id: str, version: int, entry: CachedKey) -> None:
    ttl = int(settings.ACCOUNTS["KEY_REDIS_CACHE_TTL"])
    redis_key = REDIS_ENTRY.format(key_id=key_id)
    client_or_pipe.eval(_SET_IF_NEWER, 1, redis_key, version, _entry_to_json(entry), ttl)


# --- the process-local cache -------------------------------------------------------------------------
# key_id -> (monotonic deadline, CachedKey). Plain dict operations are atomic under the GIL.
_local: dict[str, tuple[float, CachedKey]] = {}
# key_id -> monotonic time of the last "last used" write from this process.
_last_used_written: dict[str, float] = {}
_LOCAL_MAX_ENTRIES = 100_000


def clear_local_cache() -> None:
    """Forget everything cached in this process, and any Redis back-off (tests, benchmarks)."""
    global _redis_down_until
    _local.clear()
    _last_used_written.clear()
    _redis_down_until = 0.0


def forget_locally(key_id: str) -> None:
    _local.pop(key_id, None)


def _load_from_db(key_id: str) -> tuple[int, CachedKey]:
    from accounts.models import ApiKey

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
        and hmac.compare_digest(hash_key(parsed.full), entry.secret_hash)
    )


def lookup(key_id: str) -> CachedKey:
    """The cache entry for ``key_id``: local (no I/O) -> Redis (1 round trip) -> database."""
    now = time.monotonic()
    fresh = _fresh(key_id, now)
    if fresh is not None:
        return fresh

    global _redis_down_until
    cfg = settings.ACCOUNTS
    record_use = now - _last_used_written.get(key_id, -1e18) >= cfg["LAST_USED_INTERVAL"]
    entry: CachedKey | None = None
    try:
        if now < _redis_down_until:
            raise redis.ConnectionError("Redis marked unavailable (back-off)")
        client = get_redis()
        if record_use:
            # Piggy-back the throttled "last used" write on the refresh: still one round trip.
            pipe = client.pipeline(transaction=False)
            pipe.get(REDIS_ENTRY.format(key_id=key_id))
            pipe.hset(REDIS_LAST_USED, key_id, int(time.time()))
            raw = pipe.execute()[0]
        else:
            raw = client.get(REDIS_ENTRY.format(key_id=key_id))
        if raw is not None:
            entry = _entry_from_json(raw.decode().split("|", 1)[1])
        else:
            version, entry = _load_from_db(key_id)
            _set_if_newer(client, key_id, version, entry)
    except redis.RedisError as exc:
        if now >= _redis_down_until:
            logger.warning("Redis unavailable for API key lookup (%s); reading the database", exc)
            _redis_down_until = now + _REDIS_BACKOFF
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
    """Write the database state of ``key_id`` into Redis (after a change has committed)."""
    _local.pop(key_id, None)
    version, entry = _load_from_db(key_id)
    for attempt in range(3):
        try:
            _set_if_newer(get_redis(), key_id, version, entry)
            return
        except redis.RedisError:
            time.sleep(0.2 * (attempt + 1))
    # Other processes may serve the old state until the Redis entry's TTL (KEY_REDIS_CACHE_TTL) ends.
    logger.error("could not publish API key %s state to Redis after 3 attempts", key_id)


class KeyCheck:
    """Outcome names of :func:`verify` (the authentication class maps them to problem types)."""

    OK = "ok"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    IP_NOT_ALLOWED = "ip-not-allowed"


def verify(
    parsed: ParsedKey, client_ip: str | Callable[[], str | None] | None
) -> tuple[str, KeyPrincipal | None]:
    """Check a well-formed key. The secret is compared (constant time) before anything about the key
    is revealed, so revoked/expired/IP answers are only given to someone holding the full key.
    ``client_ip`` may be a callable: it is then only called for a key with IP restrictions."""
    entry = lookup(parsed.key_id)
    candidate = hash_key(parsed.full)
    matches = hmac.compare_digest(candidate, entry.secret_hash if entry.found else _DUMMY_HASH)
    if not entry.found or not matches or entry.principal is None:
        return KeyCheck.UNKNOWN, None
    if entry.principal.environment != parsed.environment:
        return KeyCheck.UNKNOWN, None
    if entry.revoked:
        return KeyCheck.REVOKED, entry.principal
    if entry.expires_ts is not None and entry.expires_ts <= time.time():
        return KeyCheck.EXPIRED, entry.principal
    if entry.networks:
        if callable(client_ip):
            client_ip = client_ip()
        try:
            address = ipaddress.ip_address(client_ip or "")
        except ValueError:
            return KeyCheck.IP_NOT_ALLOWED, entry.principal
        if not any(address in net for net in entry.networks):
            return KeyCheck.IP_NOT_ALLOWED, entry.principal
    return KeyCheck.OK, entry.principal


# --- last used ----------
def last_used_from_redis(key_ids: list[str]) -> dict[str, datetime]:
    """Unflushed "last used" times recorded in Redis (one HMGET), for the management API."""
    if not key_ids:
        return {}
    try:
        values = get_redis().hmget(REDIS_LAST_USED, key_ids)
    except redis.RedisError:
        return {}
    return {
        key_id: datetime.fromtimestamp(int(v), tz=UTC) for key_id, v in zip(key_ids, values, strict=True) if v
    }
