"""The brute-force limits of the management API applied to the pages: the same counters
(django-ratelimit groups and ``ACCOUNTS["RATE_*"]`` rates of accounts/views.py) through the same
limiter, ``accounts.failures.count``, so a client cannot get twice the budget by switching from the
API to the pages. Fails open while the cache is unreachable, like the API."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from accounts import failures
from accounts.authentication import client_ip

# group names shared with accounts/views.py (SignupView); logins use accounts.login_limits itself
SIGNUP_IP, SIGNUP_ACCOUNT = "accounts.signup.ip", "accounts.signup.account"
VERIFY_RESEND = "verify-resend"
# accounts/session_views.py's groups (password change and reset); names, not secrets (S105)
PASSWORD_CHANGE_USER = "accounts.password-change.user"  # noqa: S105
PASSWORD_RESET_IP = "accounts.password-reset.ip"  # noqa: S105
PASSWORD_RESET_ACCOUNT = "accounts.password-reset.account"  # noqa: S105
TWO_FACTOR_USER = "accounts.two-factor.user"  # the login's code step (RATE_LOGIN_ACCOUNT)
PASSWORD_RESET_CONFIRM_IP = "accounts.password-reset-confirm.ip"  # noqa: S105


def over_limit(request: HttpRequest, *, group: str, rate_setting: str, key: str) -> int | None:
    """Count one attempt; the seconds to wait when over the rate, else None."""
    return failures.over_rate(request, group=group, key=key, rate=settings.ACCOUNTS[rate_setting])


def ip_key(request: HttpRequest) -> str:
    return failures.client_bucket(client_ip(request)) or "unknown"
