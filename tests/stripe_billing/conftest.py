"""Fixtures for billing on Stripe: the stand-in with the catalogue synced, an organization with an
owner (JWT) and an API key, and signed webhook deliveries to ``POST /billing/stripe/webhook``."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import Organization, User
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from accounts.services.sessions import session_start
from billing.models import Plan
from billing.plans import DEFAULT_PLANS
from tests.stripe_standin.fixtures import TEST_WEBHOOK_SECRET
from tests.stripe_standin.webhooks import event, signature_header

_seq = itertools.count(1)
WEBHOOK = "/billing/stripe/webhook"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _celery_eager(monkeypatch):
    """The apply task queued by the webhook runs in the test's process (after the commit)."""
    from apiplatform.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture
def plans(db) -> dict[str, Plan]:
    for name, fields in DEFAULT_PLANS.items():
        Plan.objects.get_or_create(name=name, defaults=fields)
    return {p.name: p for p in Plan.objects.all()}


@pytest.fixture
def synced(stripe_env, plans):
    """The stand-in with the catalogue made by ``manage.py stripe_sync``; yields the stand-in."""
    call_command("stripe_sync", stdout=open("/dev/null", "w"))  # noqa: SIM115
    return stripe_env


@dataclass
class Tenant:
    org: Organization
    owner: User
    key: str

    def jwt(self, user: User | None = None) -> APIClient:
        client = APIClient()
        token = session_start(user=user or self.owner).access
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_ORGANIZATION=self.org.slug)
        return client

    def api(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=self.key)
        return client

    def limits(self) -> dict[str, Any]:
        response = self.api().get("/v1/limits")
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def tenant(db, plans):
    def make() -> Tenant:
        n = next(_seq)
        owner = User.objects.create_user(
            email=f"owner{n}@example.test", password="correct horse battery staple"
        )
        org = organization_create(name=f"Billing Org {n}", owner=owner)
        _row, key = api_key_create(organization=org, name="k", audit=False)
        return Tenant(org=org, owner=owner, key=key)

    return make


def signed_post(client, payload: bytes, *, secret: str = TEST_WEBHOOK_SECRET, timestamp: int | None = None):
    return client.post(
        WEBHOOK,
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature_header(payload, secret, timestamp),
    )


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """Deliver one signed event like Stripe (the apply task runs after the commit, eagerly);
    returns the webhook's response."""

    def send(type_: str, obj: dict[str, Any], *, created: int | None = None, id: str | None = None):  # noqa: A002
        body = json.dumps(event(type_, obj, created=created, id=id)).encode()
        with django_capture_on_commit_callbacks(execute=True):
            return signed_post(client, body)

    return send


def now_s() -> int:
    return int(time.time())
