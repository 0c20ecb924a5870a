"""DRF authentication for the public API with Candlestack API keys.

Accepted: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. On success
``request.user`` is an :class:`accounts.principal.ApiKeyUser` and ``request.auth`` a
:class:`accounts.principal.KeyPrincipal`. Every failure is a distinct problem type (accounts/problems.py);
401s carry ``WWW-Authenticate``. The warm path does no SQL and, amortised, no Redis round trip.
Malformed and unknown keys count against the client IP's failure budget (accounts/failures.py);
past it, keys not already known valid in this process get ``429 auth-rate-limited`` without a lookup.
The ``Origin`` header decides between secret and browser keys (accounts/keys.py ``verify``): a secret
key with an ``Origin`` gets ``403 secret-key-in-browser``, a browser key without one of its allowed
origins ``403 origin-not-allowed``; the CORS headers themselves are accounts/cors.py's.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from rest_framework.authentication import BaseAuthentication

from accounts import failures, keycache, keys
from accounts import problems as p
from accounts.keyformat import MalformedKey, parse_key
from accounts.principal import ApiKeyUser
from apiplatform.problems import ProblemError, ProblemType

_CHALLENGE = 'Bearer realm="candlestack-api"'
_RESULTS: dict[str, ProblemType] = {
    keys.KeyCheck.UNKNOWN: p.API_KEY_UNKNOWN,
    keys.KeyCheck.REVOKED: p.API_KEY_REVOKED,
    keys.KeyCheck.EXPIRED: p.API_KEY_EXPIRED,
    keys.KeyCheck.IP_NOT_ALLOWED: p.API_KEY_IP_NOT_ALLOWED,
    keys.KeyCheck.SECRET_KEY_IN_BROWSER: p.SECRET_KEY_IN_BROWSER,
    keys.KeyCheck.ORIGIN_NOT_ALLOWED: p.ORIGIN_NOT_ALLOWED,
}


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or with ``ACCOUNTS["TRUSTED_PROXY_DEPTH"] = n`` the n-th address from the right
    of X-Forwarded-For (the one your own n proxies appended)."""
    meta = request.META
    depth = settings.ACCOUNTS["TRUSTED_PROXY_DEPTH"]
    candidate = meta.get("REMOTE_ADDR")
    if depth:
        forwarded = [a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= depth:
            candidate = forwarded[-depth]
    try:
        return str(ipaddress.ip_address(candidate or ""))
    except ValueError:
        return None


def raw_key_from(request) -> str | None:
    meta = request.META
    header = meta.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise ProblemError(
            p.API_KEY_MALFORMED,
            "The Authorization header must be `Bearer <key>`.",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_request"'},
        )
    value = meta.get("HTTP_X_API_KEY")
    if value is not None and value.strip():
        return value.strip()
    return None


def fail(problem: ProblemType, detail: str | None = None) -> ProblemError:
    headers = {}
    if problem.status == 401:
        error = "invalid_request" if problem in (p.API_KEY_MISSING, p.API_KEY_MALFORMED) else "invalid_token"
        headers["WWW-Authenticate"] = f'{_CHALLENGE}, error="{error}"'
    return ProblemError(problem, detail, headers=headers)


def over_budget(retry_after: int) -> ProblemError:
    return ProblemError(
        p.AUTH_RATE_LIMITED,
        f"Too many failed API-key authentications from this IP address; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
        extra={"retry_after": retry_after},
    )


def counted(request, error: ProblemError) -> ProblemError:
    """Count a malformed/unknown key against the client's failure budget (accounts/failures.py):
    ``error`` while within it, ``auth-rate-limited`` beyond it. A client this process already knows
    to be over budget is answered from the memo, without touching the shared counter again."""
    bucket = failures.client_bucket(client_ip(request))
    retry_after = failures.blocked_for(bucket) or failures.record_failure(request, bucket)
    return error if retry_after is None else over_budget(retry_after)


class ApiKeyAuthentication(BaseAuthentication):
    """For public /v1 views. Missing credentials are an error here (not "anonymous"): public
    endpoints always need a key, and the caller gets the specific ``api-key-missing`` problem."""

    def authenticate(self, request):
        try:
            raw = raw_key_from(request)
        except ProblemError as exc:  # an Authorization header that is not `Bearer <key>`
            raise counted(request, exc) from None
        if raw is None:
            raise fail(p.API_KEY_MISSING)
        try:
            parsed = parse_key(raw)
        except MalformedKey:
            raise counted(request, fail(p.API_KEY_MALFORMED)) from None
        # Only a cold lookup can cost Redis and SQL, and only then is the (process-local) failure
        # memo consulted: the warm path stays free of it, and of parsing the client IP.
        if failures.any_blocked() and not keycache.is_warm(parsed.key_id):
            retry_after = failures.blocked_for(failures.client_bucket(client_ip(request)))
            if retry_after is not None and not keycache.known_valid(parsed):
                raise over_budget(retry_after)
        origin = request.META.get("HTTP_ORIGIN")
        # The client IP is parsed only for a key with IP restrictions.
        result, principal = keys.verify(parsed, lambda: client_ip(request), origin)
        if result == keys.KeyCheck.UNKNOWN:
            raise counted(request, fail(p.API_KEY_UNKNOWN))
        if result == keys.KeyCheck.ORIGIN_NOT_ALLOWED:
            raise ProblemError(p.ORIGIN_NOT_ALLOWED, extra={"origin": origin})
        if result != keys.KeyCheck.OK:
            raise fail(_RESULTS[result])
        assert principal is not None
        return ApiKeyUser(principal), principal

    def authenticate_header(self, request):
        return _CHALLENGE
