"""Secrets stay secret (issue 14): answers carrying a secret are never stored by a cache, no log line
carries a key, token or password, and production refuses weak JWT and pepper secrets."""

from __future__ import annotations

import logging
import re
import secrets

import pytest
from django.core import mail
from rest_framework.test import APIClient

from apiplatform.logging import RedactSecretsFilter
from tests.conftest import production_environment, run_python

PASSWORD = "journey passphrase one"
NEW_PASSWORD = "journey passphrase two"
RESET_PASSWORD = "journey passphrase three"


def emailed_token(index: int = -1) -> str:
    return re.search(r'"token": "([^"]+)"', mail.outbox[index].body).group(1)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.mark.django_db
def test_a_full_journey_logs_no_key_token_or_password(
    caplog, django_capture_on_commit_callbacks, monkeypatch
):
    # The code itself must log no secret: the console handler's redaction (tested below) is off here.
    monkeypatch.setattr(RedactSecretsFilter, "filter", lambda self, record: True)
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [PASSWORD, NEW_PASSWORD, RESET_PASSWORD]
    anonymous = APIClient()
    with django_capture_on_commit_callbacks(execute=True):  # the verification email
        signup = anonymous.post(
            "/v1/account/signup",
            {"email": "journey@example.test", "password": PASSWORD, "organization_name": "Journey"},
            format="json",
        )
    assert signup.status_code == 202  # sign-up answers alike for every address: no tokens
    verification = emailed_token()
    seen.append(verification)
    assert (
        anonymous.post("/v1/account/verify-email", {"token": verification}, format="json").status_code == 200
    )
    login = anonymous.post(
        "/v1/account/token", {"email": "journey@example.test", "password": PASSWORD}, format="json"
    ).json()
    seen += [login["access"], login["refresh"]]
    refreshed = anonymous.post(
        "/v1/account/token/refresh", {"refresh": login["refresh"]}, format="json"
    ).json()
    seen += [refreshed["access"], refreshed["refresh"]]
    # A replayed refresh token (reuse detection logs a warning about the session, not the token).
    assert (
        anonymous.post("/v1/account/token/refresh", {"refresh": login["refresh"]}, format="json").status_code
        == 401
    )
    again = anonymous.post(  # the replay above ended that session: log in again
        "/v1/account/token", {"email": "journey@example.test", "password": PASSWORD}, format="json"
    ).json()
    seen += [again["access"], again["refresh"]]
    owner = bearer(again["access"])
    created = owner.post("/v1/account/keys", {"name": "journey"}, format="json").json()
    seen.append(created["key"])
    assert APIClient().get("/v1/limits", HTTP_X_API_KEY=created["key"]).status_code == 200
    rotated = owner.post(f"/v1/account/keys/{created['key_id']}/rotate", {}, format="json").json()
    seen.append(rotated["new_key"]["key"])
    assert (
        APIClient().get("/v1/limits", HTTP_AUTHORIZATION=f"Bearer {rotated['new_key']['key']}").status_code
        == 200
    )
    wrong_secret = created["key"][:-8] + "AAAAAAAA"  # a near miss of a real key is not logged either
    seen.append(wrong_secret)
    APIClient().get("/v1/limits", HTTP_X_API_KEY=wrong_secret)
    changed = owner.post(
        "/v1/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert changed.status_code == 200
    assert owner.post("/v1/account/logout").status_code == 204
    assert (
        anonymous.post(
            "/v1/account/password/reset", {"email": "journey@example.test"}, format="json"
        ).status_code
        == 202
    )
    reset = emailed_token()
    seen.append(reset)
    confirmed = anonymous.post(
        "/v1/account/password/reset/confirm", {"token": reset, "new_password": RESET_PASSWORD}, format="json"
    )
    assert confirmed.status_code == 204

    assert caplog.records, "the journey logged nothing: the capture is not working"
    logged = caplog.text + "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records
    )
    leaked = [secret[:12] + "…" for secret in seen if secret in logged]
    assert not leaked, f"secrets in the logs: {leaked}"


@pytest.mark.django_db
def test_answers_that_carry_a_secret_are_never_stored(make_user, make_org, jwt_client):
    anonymous = APIClient()
    signup = anonymous.post(
        "/v1/account/signup",
        {"email": "store@example.test", "password": PASSWORD, "organization_name": "Store"},
        format="json",
    )
    login = anonymous.post(
        "/v1/account/token", {"email": "store@example.test", "password": PASSWORD}, format="json"
    )
    refreshed = anonymous.post(
        "/v1/account/token/refresh", {"refresh": login.json()["refresh"]}, format="json"
    )
    owner = bearer(login.json()["access"])
    # a test key: live keys need a verified address, and this journey does not verify it
    created = owner.post("/v1/account/keys", {"name": "k", "environment": "test"}, format="json")
    rotated = owner.post(f"/v1/account/keys/{created.json()['key_id']}/rotate", {}, format="json")
    failed = anonymous.post("/v1/account/token/refresh", {"refresh": "nope"}, format="json")
    reset = anonymous.post("/v1/account/password/reset", {"email": "store@example.test"}, format="json")
    answers = {
        "signup": signup,
        "token": login,
        "refresh": refreshed,
        "key create": created,
        "key rotate": rotated,
        "refresh refused": failed,
        "password reset": reset,
    }
    assert [name for name, a in answers.items() if a.status_code >= 500] == []
    not_no_store = {
        name: a.get("Cache-Control") for name, a in answers.items() if a.get("Cache-Control") != "no-store"
    }
    assert not not_no_store


PRODUCTION = {**production_environment(), "JWT_SIGNING_KEY": None, "API_KEY_PEPPER": None}
SETUP = "import django; django.setup(); print('started')"


@pytest.mark.parametrize("name", ["JWT_SIGNING_KEY", "API_KEY_PEPPER"])
def test_production_refuses_a_weak_jwt_signing_key_or_pepper(name):
    for weak in ["x", "short-but-not-50", "b" * 64]:
        result = run_python(SETUP, {**PRODUCTION, name: weak})
        assert result.returncode != 0, weak
        assert f"{name} is too weak" in result.stderr
    strong = run_python(SETUP, {**PRODUCTION, name: secrets.token_urlsafe(64)})
    assert strong.returncode == 0, strong.stderr
    unset = run_python(SETUP, PRODUCTION)  # derived from the (checked) SECRET_KEY
    assert unset.returncode == 0, unset.stderr


def test_development_mode_keeps_accepting_short_secrets():
    result = run_python(SETUP, {"DEBUG": "1", "JWT_SIGNING_KEY": "x", "API_KEY_PEPPER": "y"})
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_verification_email_keeps_the_token_out_of_urls(django_capture_on_commit_callbacks):
    """A token in a URL lands in access logs and browser histories: the email gives it for a POST."""
    with django_capture_on_commit_callbacks(execute=True):
        APIClient().post(
            "/v1/account/signup",
            {"email": "nourl@example.test", "password": PASSWORD, "organization_name": "No URL"},
            format="json",
        )
    body = mail.outbox[-1].body
    token = emailed_token()
    assert "?token=" not in body and f"/{token}" not in body
    assert APIClient().post("/v1/account/verify-email", {"token": token}, format="json").status_code == 200


def test_a_secret_that_slips_into_a_log_line_is_redacted_by_the_console_handler():
    """Defense in depth behind the journey above: the configured handler masks JWTs, API-key
    secrets and token parameters, and keeps what identifies them (the key's public prefix)."""
    key = "cs_live_4fJx0cQ2mZpA_Vb2kq7S0pL9wXeR1tYzU3nM8cD6hG5fAj2Bc1D"
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJlLXBhcnQ"
    console = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    record = logging.LogRecord(
        "test",
        logging.WARNING,
        __file__,
        1,
        "GET /x?token=%s key=%s auth=%s",
        ("s3cr3t-t0ken", key, jwt_like),
        None,
    )
    assert console.filter(record)
    line = console.format(record)
    assert "s3cr3t-t0ken" not in line and key not in line and jwt_like not in line
    assert "cs_live_4fJx0cQ2mZpA_[redacted]" in line and "?token=[redacted]" in line
