"""Password change and reset by email (issue 14, OWASP API2): sessions end, tokens are single-use and
expire, unknown addresses get the same answer, weak passwords are refused."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase 42"


def slug_of(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


def log_in(email: str, password: str = PASSWORD):
    return APIClient().post("/v1/account/token", {"email": email, "password": password}, format="json")


def authed(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def refresh(token: str):
    return APIClient().post("/v1/account/token/refresh", {"refresh": token}, format="json")


def reset_token(message) -> str:
    return re.search(r'"token": "([^"]+)"', message.body).group(1)


def request_reset(email: str, **extra):
    return APIClient(**extra).post("/v1/account/password/reset", {"email": email}, format="json")


def confirm(token: str, password: str = NEW_PASSWORD):
    return APIClient().post(
        "/v1/account/password/reset/confirm", {"token": token, "new_password": password}, format="json"
    )


# --- change ---
def test_password_change_ends_every_other_session_and_keeps_this_one(make_user):
    make_user("change@example.test")
    mine = log_in("change@example.test").json()
    other = log_in("change@example.test").json()
    answer = authed(mine["access"]).post(
        "/v1/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
    )
    assert answer.status_code == 200 and answer.json() == {"sessions_ended": 1}
    assert authed(other["access"]).get("/v1/account/me").status_code == 401
    assert refresh(other["refresh"]).status_code == 401
    assert authed(mine["access"]).get("/v1/account/me").status_code == 200
    assert refresh(mine["refresh"]).status_code == 200
    assert log_in("change@example.test").status_code == 401
    assert log_in("change@example.test", NEW_PASSWORD).status_code == 200


def test_password_change_needs_the_current_password_and_a_strong_new_one(make_user):
    user = make_user("weak@example.test")
    access = log_in("weak@example.test").json()["access"]
    client = authed(access)
    wrong = client.post(
        "/v1/account/password",
        {"current_password": "not it at all", "new_password": NEW_PASSWORD},
        format="json",
    )
    assert wrong.status_code == 400 and slug_of(wrong) == "validation-error"
    assert "current_password" in wrong.content.decode()
    for weak in ["password123", "1234567890123", "short"]:  # common, only digits, too short
        refused = client.post(
            "/v1/account/password", {"current_password": PASSWORD, "new_password": weak}, format="json"
        )
        assert refused.status_code == 400 and "new_password" in refused.content.decode(), weak
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_change_is_limited_per_user(make_user, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_PASSWORD_CHANGE_USER": "2/h"}
    make_user("guess@example.test")
    client = authed(log_in("guess@example.test").json()["access"])
    body = {"current_password": "guessing the password", "new_password": NEW_PASSWORD}
    statuses = [client.post("/v1/account/password", body, format="json").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


# --- reset ---
def test_reset_answers_the_same_for_known_and_unknown_addresses(make_user):
    make_user("known@example.test")
    known = request_reset("known@example.test")
    unknown = request_reset("nobody@example.test")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert [m.to for m in mail.outbox] == [["known@example.test"]]


def test_reset_ends_every_session_and_its_token_is_single_use(make_user):
    user = make_user("reset@example.test")
    sessions = [log_in("reset@example.test").json() for _ in range(2)]
    assert request_reset("RESET@example.test").status_code == 202
    token = reset_token(mail.outbox[-1])
    done = confirm(token)
    assert done.status_code == 204
    for pair in sessions:
        assert authed(pair["access"]).get("/v1/account/me").status_code == 401
        assert refresh(pair["refresh"]).status_code == 401
    assert log_in("reset@example.test", NEW_PASSWORD).status_code == 200
    again = confirm(token, "yet another passphrase 7")
    assert again.status_code == 400 and slug_of(again) == "password-reset-invalid"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert user.email_verified_at is not None  # the token came to the address


def test_reset_token_expires(make_user, settings, monkeypatch):
    settings.PASSWORD_RESET_TIMEOUT = 3600
    make_user("late@example.test")
    request_reset("late@example.test")
    token = reset_token(mail.outbox[-1])
    issued = PasswordResetTokenGenerator()._now()
    monkeypatch.setattr(PasswordResetTokenGenerator, "_now", lambda self: issued + timedelta(hours=2))
    late = confirm(token)
    assert late.status_code == 400 and slug_of(late) == "password-reset-invalid"


def test_reset_token_dies_when_the_password_changes_otherwise(make_user):
    user = make_user("changed@example.test")
    request_reset("changed@example.test")
    token = reset_token(mail.outbox[-1])
    user.set_password("changed in the meantime 1")
    user.save()
    assert slug_of(confirm(token)) == "password-reset-invalid"


def test_reset_refuses_a_weak_password_and_keeps_the_token_usable(make_user):
    make_user("weakreset@example.test")
    request_reset("weakreset@example.test")
    token = reset_token(mail.outbox[-1])
    weak = confirm(token, "password123")
    assert weak.status_code == 400 and slug_of(weak) == "validation-error"
    assert confirm(token).status_code == 204


@pytest.mark.parametrize("token", ["", "garbage", "MQ.garbage-token", "!!!.x", "MTIzNDU2Nzg5.1-2"])
def test_malformed_reset_tokens_are_a_400_problem(token, make_user):
    make_user()
    response = confirm(token)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")


def test_reset_requests_are_limited_per_address_whatever_the_client(make_user, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_PASSWORD_RESET_ACCOUNT": "2/h"}
    make_user("bomb@example.test")
    statuses = [
        request_reset("bomb@example.test", REMOTE_ADDR=f"192.0.2.{i}").status_code for i in range(1, 4)
    ]
    assert statuses == [202, 202, 429]
    assert len(mail.outbox) == 2
    # An unknown address is limited the same way: the 429 tells nothing either.
    unknown = [request_reset("ghost@example.test").status_code for _ in range(3)]
    assert unknown == [202, 202, 429]


def test_reset_email_carries_no_link_with_the_token_in_a_url(make_user):
    make_user("url@example.test")
    request_reset("url@example.test")
    body = mail.outbox[-1].body
    token = reset_token(mail.outbox[-1])
    assert f"?token={token}" not in body and f"/{token}" not in body
    assert User.objects.get(email="url@example.test").check_password(PASSWORD)  # nothing changed yet
