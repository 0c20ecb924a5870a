"""A per-client-IP budget of failed API-key authentications (docs/accounts.md, "Failed-authentication
budget").

Anyone can forge a well-formed key with a valid checksum, and every new key id misses the
process-local key cache and costs a Redis GET, a PostgreSQL query and a Redis SET. So each client IP
may cause at most ``ACCOUNTS["API_KEY_FAILURES_PER_MINUTE"]`` failed authentications per fixed
window (django-ratelimit's ``get_usage`` on the Django cache, as for login); past that its requests
are refused with ``429 auth-rate-limited`` *before* any key lookup, unless the key is one this
process already knows to be valid.

Counted: malformed (incl. an ``Authorization`` header that is not ``Bearer``) and unknown keys —
what forging and enumerating produce. Not counted: a missing key (no lookup, nothing guessed),
revoked / expired / IP-not-allowed (only a holder of the complete, correct key gets those; their
entries stay cached, so repeating them costs no database work).

Cost: the shared counter is touched only when a failure happens (one cache round trip, alongside
the metering call every 401 makes anyway). The "is this IP over budget" question is answered from a
process-local memo filled by those increments, so a valid key's cold lookup pays no extra round
trip. The price: a process that has not yet seen a failure from an IP this window lets one more
lookup through before its own increment tells it the budget is spent (at most one per process per
window).

Fail open: if the cache is unreachable, failures are not counted and the cache is not tried again
for ``REDIS_BACKOFF_SECONDS`` (the ``"cache"`` breaker of apiplatform.redis_access: one warning per
outage), so an outage adds no timeout to every failure.
"""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django_ratelimit.core import get_usage

from apiplatform import redis_access

GROUP = "accounts.api_key_failures"
_WINDOW = "m"  # the budget is per minute (django-ratelimit period)
_MAX_BLOCKED = 100_000

# client bucket -> the last whole second (time.time(), django-ratelimit's clock) of the window in
# which it used up its budget. Plain dict operations are atomic under the GIL.
_blocked: dict[str, int] = {}
_pruned_at = 0  # time.time() of the last sweep of ended windows out of _blocked


def clear() -> None:
    """Forget the memo (tests, as for a freshly started process; the back-off is
    :func:`apiplatform.redis_access.reset_all`'s)."""
    global _pruned_at
    _blocked.clear()
    _pruned_at = 0


def client_bucket(ip: str | None) -> str | None:
    """What the budget is kept per: the IPv4 address, or the IPv6 /64 (``RATELIMIT_IPV6_MASK``, as
    django-ratelimit's own ``ip`` key does) — one subscriber usually holds a whole /64, so a
    per-address budget would be no budget. None (unparseable address): no budget."""
    if not ip:
        return None
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{settings.RATELIMIT_IPV6_MASK}", strict=False))
    return ip


def any_blocked() -> bool:
    """False on the normal path: no client is known to be over budget in this process (ended
    windows are swept out, see :func:`record_failure`)."""
    return bool(_blocked)


def blocked_for(bucket: str | None) -> int | None:
    """Seconds until ``bucket``'s window ends if this process knows it is over budget; else None.
    No I/O."""
    if bucket is None:
        return None
    last_second = _blocked.get(bucket)
    if last_second is None:
        return None
    now = int(time.time())
    if now > last_second:
        _blocked.pop(bucket, None)
        return None
    return last_second + 1 - now


def count(request, *, group: str, key, rate: str) -> dict | None:
    """Count one attempt with django-ratelimit (a fixed window on the Django cache); its usage dict,
    or None when it could not count: the cache is unreachable or backing off (the ``"cache"``
    breaker: one warning per outage, then not tried for ``REDIS_BACKOFF_SECONDS``) or django-ratelimit
    says it could not count. Callers fail open on None. Shared by this budget and the sign-up / login /
    refresh limits (accounts/views.py). Never raises."""
    try:
        with redis_access.breaker("cache").guard():
            usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    except redis_access.ERRORS:
        return None
    # None: RATELIMIT_ENABLE is off. time_left < 0: django-ratelimit could not count (its
    # fail-closed answer, e.g. the key expired between ADD and INCR): fail open instead.
    if usage is None or usage["time_left"] < 0:
        return None
    return usage


def over_rate(request, *, group: str, key: str, rate: str) -> int | None:
    """Count one attempt of ``key`` in ``group``; the seconds to wait when it is over ``rate``, else
    None (also while the cache is unreachable: :func:`count` fails open). The one rule behind the
    sign-up, login, password, invitation and documentation limits."""
    usage = count(request, group=group, key=lambda _g, _r: key, rate=rate)
    if usage is not None and usage["should_limit"]:
        return max(1, int(usage["time_left"]))
    return None


def record_failure(request, bucket: str | None) -> int | None:
    """Count one failed authentication of ``bucket``. Returns the seconds until the window ends if
    this failure is beyond the budget (the caller answers 429), else None. Never raises."""
    global _pruned_at
    limit = int(settings.ACCOUNTS["API_KEY_FAILURES_PER_MINUTE"])
    if limit <= 0 or bucket is None:
        return None
    usage = count(request, group=GROUP, key=lambda _g, _r: bucket, rate=f"{limit}/{_WINDOW}")
    if usage is None:
        return None
    if usage["count"] < limit:
        return None
    # Budget used up (this may be its last allowed failure): remember it for the window so that
    # this process refuses the next cold lookups without asking the cache.
    now = int(time.time())
    if now - _pruned_at >= 60:  # ended windows go at most once a minute: O(n) stays rare
        for ended in [b for b, last in _blocked.items() if last < now]:
            _blocked.pop(ended, None)
        _pruned_at = now
    if len(_blocked) >= _MAX_BLOCKED and bucket not in _blocked:
        _blocked.clear()  # bounded memory; the shared counter still knows, increments re-fill it
    last_second = now + usage["time_left"]
    _blocked[bucket] = last_second
    if usage["count"] == limit:
        return None
    return max(1, last_second + 1 - now)
