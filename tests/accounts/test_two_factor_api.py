"""Two-factor authentication (turned on in the portal) guards the API login too."""

from __future__ import annotations

from django_otp.oath import totp
from rest_framework.test import APIClient

from accounts.services.two_factor import two_factor_enrol_confirm, two_factor_enrol_start

PASSWORD = "correct horse battery staple"


def _code(device) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def _login(**extra):
    return APIClient().post(
        "/v1/account/token", {"email": "mfa@example.test", "password": PASSWORD, **extra}, format="json"
    )


def test_an_account_with_two_factor_needs_the_code_for_api_tokens(make_user, settings):
    settings.ACCOUNTS = {
        **settings.ACCOUNTS,
        "RATE_LOGIN_ACCOUNT": "100/m",
        "RATE_LOGIN_ACCOUNT_CEILING": "100/m",
    }
    user = make_user("mfa@example.test", password=PASSWORD)
    assert _login().status_code == 200  # off: the password is enough
    device = two_factor_enrol_start(user=user)
    recovery = two_factor_enrol_confirm(user=user, code=_code(device))
    assert recovery
    refused = _login()
    assert refused.status_code == 401 and refused.json()["type"].endswith("/problems/two-factor-required")
    wrong = _login(otp_code="000000" if _code(device) != "000000" else "111111")
    assert wrong.status_code == 401 and wrong.json()["type"].endswith("/problems/invalid-credentials")
    device.refresh_from_db()
    device.throttling_failure_count, device.throttling_failure_timestamp = 0, None
    device.save()
    device.last_t = -1  # the step used at enrolment may be used again here (django-otp refuses replays)
    device.save()
    assert _login(otp_code=_code(device)).status_code == 200
    assert _login(otp_code=recovery[0]).status_code == 200
    assert _login(otp_code=recovery[0]).status_code == 401  # a recovery code works once
    wrong_password = APIClient().post(
        "/v1/account/token",
        {"email": "mfa@example.test", "password": "not the password", "otp_code": recovery[1]},
        format="json",
    )
    assert wrong_password.status_code == 401
