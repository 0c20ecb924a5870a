"""The verification email goes through Celery: sign-up never waits for (or fails on) the mail
server or the broker; SMTP failures are retried then dead-lettered; the user can ask again."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tasks import send_verification_email
from apiplatform.jobs.models import DeadLetter
from tests.accounts.flaky_mail import FlakyBackend

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.django_db


def signup(email: str, capture) -> dict:
    with capture(execute=True):
        response = APIClient().post(
            "/v1/account/signup",
            {"email": email, "password": PASSWORD, "organization_name": f"Org of {email.split('@')[0]}"},
            format="json",
        )
    assert response.status_code == 202, response.content
    # sign-up answers without tokens (the same for a registered address): log in for them
    login = APIClient().post("/v1/account/token", {"email": email, "password": PASSWORD}, format="json")
    assert login.status_code == 200, login.content
    return {"tokens": login.json()}


def token_in(message) -> str:
    return re.search(r'"token": "([^"]+)"', message.body).group(1)


@pytest.fixture
def flaky_mail(settings):
    settings.EMAIL_BACKEND = "tests.accounts.flaky_mail.FlakyBackend"
    FlakyBackend.attempts = 0
    return FlakyBackend


def test_a_mail_server_that_fails_twice_is_retried_and_the_email_arrives(
    flaky_mail, django_capture_on_commit_callbacks
):
    flaky_mail.failures = 2
    signup("retry@example.test", django_capture_on_commit_callbacks)
    assert flaky_mail.attempts == 3
    assert [m.to for m in mail.outbox] == [["retry@example.test"]]
    assert not DeadLetter.objects.filter(task_name="accounts.send_verification_email").exists()


def test_a_mail_server_that_stays_down_leaves_a_dead_letter_not_a_failed_signup(
    flaky_mail, django_capture_on_commit_callbacks
):
    flaky_mail.failures = 10**6
    body = signup("down@example.test", django_capture_on_commit_callbacks)
    assert flaky_mail.attempts == send_verification_email.max_retries + 1
    assert mail.outbox == []
    letter = DeadLetter.objects.get(task_name="accounts.send_verification_email")
    assert letter.args == [User.objects.get(email="down@example.test").pk]
    # the account works; the user asks again once the mail server is back
    flaky_mail.failures = 0
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['tokens']['access']}")
    again = client.post("/v1/account/verify-email/resend")
    assert again.status_code == 202 and again.json() == {"queued": True, "email_verified": False}
    assert len(mail.outbox) == 1
    verified = APIClient().post(
        "/v1/account/verify-email", {"token": token_in(mail.outbox[0])}, format="json"
    )
    assert verified.json()["email_verified"] is True


def test_signup_answers_even_when_the_broker_is_down(
    monkeypatch, closed_port, django_capture_on_commit_callbacks
):
    from apiplatform.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", False)
    down = f"redis://127.0.0.1:{closed_port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", down)  # Celery reads the variable before its setting
    monkeypatch.setitem(app.conf, "broker_url", down)
    monkeypatch.setitem(app.conf, "broker_transport_options", {"max_retries": 0})
    monkeypatch.setattr(app, "_pool", None)  # connect with the URL above
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    body = signup("nobroker@example.test", django_capture_on_commit_callbacks)
    assert mail.outbox == []
    assert User.objects.filter(email="nobroker@example.test").exists()
    # asking again while the broker is still down says so instead of pretending
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['tokens']['access']}")
    again = client.post("/v1/account/verify-email/resend")
    assert again.status_code == 503
    assert again.json()["type"].endswith("/service-unavailable")


def test_resend_is_refused_politely_when_verified_and_limited_per_user(
    settings, django_capture_on_commit_callbacks
):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_VERIFY_RESEND_USER": "2/h"}
    body = signup("limit@example.test", django_capture_on_commit_callbacks)
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['tokens']['access']}")
    answers = [client.post("/v1/account/verify-email/resend") for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    assert len(mail.outbox) == 3  # sign-up + 2 resends
    assert APIClient().post("/v1/account/verify-email/resend").status_code == 401


def test_resend_for_a_verified_address_sends_nothing(django_capture_on_commit_callbacks):
    body = signup("done@example.test", django_capture_on_commit_callbacks)
    APIClient().post("/v1/account/verify-email", {"token": token_in(mail.outbox[0])}, format="json")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {body['tokens']['access']}")
    answer = client.post("/v1/account/verify-email/resend")
    assert answer.status_code == 200 and answer.json() == {"queued": False, "email_verified": True}
    assert len(mail.outbox) == 1


def test_an_invitation_whose_email_fails_is_not_created(flaky_mail, make_org, jwt_client):
    from accounts.models import Invitation
    from tests.accounts.conftest import owner_of

    org = make_org()
    client = jwt_client(owner_of(org))
    flaky_mail.failures = 1
    failed = client.post(
        "/v1/account/invitations", {"email": "x@example.test", "role": "developer"}, format="json"
    )
    assert failed.status_code == 503, failed.content
    assert not Invitation.objects.filter(organization=org).exists()
    created = client.post(
        "/v1/account/invitations", {"email": "x@example.test", "role": "developer"}, format="json"
    )
    assert created.status_code == 201
    assert Invitation.objects.filter(organization=org, email="x@example.test").count() == 1
    assert [m.to for m in mail.outbox] == [["x@example.test"]]
