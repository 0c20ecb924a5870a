"""API-key verification: is this well-formed key valid, and whose is it?

The key format, parsing and hashing are :mod:`accounts.keyformat`; the principal a valid key stands
for is :mod:`accounts.principal`; where the key's state comes from (process-local cache, Redis,
PostgreSQL) is :mod:`accounts.keycache`. The DRF authentication class (accounts/authentication.py)
maps the outcomes below to problem types.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable

from accounts import keycache
from accounts.keyformat import ParsedKey, hash_key
from accounts.principal import KeyPrincipal

# A hash that never matches, compared against when the key id is unknown so that unknown ids and
# wrong secrets take the same code path.
_DUMMY_HASH = "0" * 64


class KeyCheck:
    """Outcome names of :func:`verify` (the authentication class maps them to problem types)."""

    OK = "ok"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    IP_NOT_ALLOWED = "ip-not-allowed"
    SECRET_KEY_IN_BROWSER = "secret-key-in-browser"  # noqa: S105 - an outcome name
    ORIGIN_NOT_ALLOWED = "origin-not-allowed"


def verify(
    parsed: ParsedKey, client_ip: str | Callable[[], str | None] | None, origin: str | None = None
) -> tuple[str, KeyPrincipal | None]:
    """Check a well-formed key. The secret is compared (constant time) before anything about the key
    is revealed, so revoked/expired/IP/origin answers are only given to someone holding the full key.
    ``client_ip`` may be a callable: it is then only called for a key with IP restrictions.
    ``origin`` is the request's ``Origin`` header (None when absent): a browser sends it on every
    cross-origin request, so a secret key that comes with one is being used from a web page (and
    refused), and a browser key must come with one of its allowed origins."""
    entry = keycache.lookup(parsed.key_id)
    candidate = hash_key(parsed.full)
    matches = hmac.compare_digest(candidate, entry.secret_hash if entry.found else _DUMMY_HASH)
    if not entry.found or not matches or entry.principal is None:
        return KeyCheck.UNKNOWN, None
    if entry.principal.environment != parsed.environment or entry.principal.kind != parsed.kind:
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
    if entry.principal.is_browser:
        if origin is None or not entry.origins.allows(origin):
            return KeyCheck.ORIGIN_NOT_ALLOWED, entry.principal
    elif origin is not None:
        return KeyCheck.SECRET_KEY_IN_BROWSER, entry.principal
    return KeyCheck.OK, entry.principal
