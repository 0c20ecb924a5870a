"""Brute-force limits of password logins: the management API's ``POST token`` and the Django admin's
login form count against the same budgets (docs/accounts.md, "Brute-force protection").

For each attempt, in this order (django-ratelimit fixed windows on the Django cache, through
``accounts.failures.count``: they fail open while the cache is unreachable):

1. per client (``RATE_LOGIN_IP``): credential stuffing across accounts from one address;
2. per (account, client) (``RATE_LOGIN_ACCOUNT``): guessing one account's password from one
   address. Keyed by the pair, so a stranger using up their budget for your address does not
   lock *you* out;
3. per account, all clients together (``RATE_LOGIN_ACCOUNT_CEILING``, higher): the backstop
   against guessing one account from many addresses. Only attempts that passed 2. count, so a
   single client can never reach it alone (keep the ceiling above the per-pair rate of the same
   window).

"Client" is ``accounts.failures.client_bucket`` of ``accounts.authentication.client_ip``: the IPv4
address, or the IPv6 /64, behind ``TRUSTED_PROXY_DEPTH`` proxies.
"""

from __future__ import annotations

from django.conf import settings

from accounts import failures
from accounts.authentication import client_ip

IP_GROUP = "accounts.token.ip"
PAIR_GROUP = "accounts.login.account-client"
ACCOUNT_GROUP = "accounts.login.account"


def ip_limit(request) -> int | None:
    """Count a login attempt of this client; seconds to wait if it is over ``RATE_LOGIN_IP``."""
    bucket = failures.client_bucket(client_ip(request)) or "unknown"
    return failures.over_rate(request, group=IP_GROUP, key=bucket, rate=settings.ACCOUNTS["RATE_LOGIN_IP"])


def account_limit(request, *, email: str) -> int | None:
    """Count a login attempt at ``email`` from this client; seconds to wait if it is over the
    per-(account, client) limit or the per-account ceiling, else None."""
    account = email.strip().lower()
    bucket = failures.client_bucket(client_ip(request)) or "unknown"
    limits = settings.ACCOUNTS
    waited = failures.over_rate(
        request, group=PAIR_GROUP, key=f"{account}|{bucket}", rate=limits["RATE_LOGIN_ACCOUNT"]
    )
    if waited is not None:
        return waited
    return failures.over_rate(
        request, group=ACCOUNT_GROUP, key=account, rate=limits["RATE_LOGIN_ACCOUNT_CEILING"]
    )


def login_limit(request, *, email: str) -> int | None:
    """Both, for a login form that has the email at hand (the admin's)."""
    return ip_limit(request) or account_limit(request, email=email)
