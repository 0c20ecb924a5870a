"""Fixtures of the contract tests: a platform with real, committed data (the checks call a real server,
gunicorn or the WSGI app from other threads, so nothing may hide in a test transaction).

Everything is written through the products' own write paths: coins, candles and snapshots through
``marketdata.services``, the screener table through ``marketdata.screener.latest_indicators_refresh``
(what the ``marketdata.refresh_screener`` task runs), the organization, its owner, the API key and
the plan through the accounts and billing services."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.test import Client

from accounts.models import Organization, User
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from accounts.services.sessions import session_start
from accounts.services.users import email_verification_token, user_verify_email
from billing import services as billing_services
from marketdata.screener import latest_indicators_refresh
from tests.api.conftest import SEED, write_market

_seq = itertools.count(1)

PUBLIC = "public"
MANAGEMENT = "management"


def served_schema() -> dict:
    """The OpenAPI document exactly as the app serves it at /v1/schema/ (JSON rendition)."""
    response = Client().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content[:500]
    return json.loads(response.content)


def api_group(path: str) -> str | None:
    """Which API an operation belongs to: the management API (/v1/account/...), the public API (every
    other /v1/ route), or neither (the schema and docs routes)."""
    if path.startswith("/v1/account/") or path == "/v1/account":
        return MANAGEMENT
    if path == "/v1/stream":
        # an endless text/event-stream served by the ASGI stream server only (the WSGI app these
        # suites drive answers 503 stream-unavailable): tests/stream covers it with real SSE clients
        return None
    if path.startswith("/v1/") and not path.startswith(("/v1/schema", "/v1/docs", "/v1/redoc")):
        return PUBLIC
    return None


@dataclass
class Platform:
    coins: dict[str, int]
    organization: Organization
    owner: User
    password: str
    api_key: str  # full key of the Enterprise organization
    access_token: str  # JWT of the owner


@pytest.fixture
def platform(transactional_db) -> Platform:
    """The platform, committed (for a server in another process or thread)."""
    return make_platform()


@pytest.fixture
def platform_in_test_transaction(db) -> Platform:
    """The platform inside the test's transaction (for the WSGI app called in the test's thread)."""
    return make_platform()


def make_platform() -> Platform:
    """Seeded plans; three coins (bitcoin 300 1h candles, ethereum 40, dogecoin none) with snapshots of
    bitcoin and ethereum and a computed 1h screener table; an organization on the Enterprise plan with
    its owner (password known), a live API key and an owner access token."""
    SEED.seed(apps, None)  # a transactional test before this one flushed the seeded plans
    hour0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    ids = write_market(hour0)
    # the body of the marketdata.refresh_screener task (a Celery task run in the test's process would
    # close the test transaction's connection when it ends)
    assert latest_indicators_refresh(timeframe="1h").coins == 2

    password = "contract test passphrase"
    n = next(_seq)
    owner = User.objects.create_user(email=f"owner{n}@example.test", password=password)
    # a verified address (through the verification service): live keys and invitations need one
    owner = user_verify_email(token=email_verification_token(user=owner))
    organization = organization_create(name=f"Contract Org {n}", owner=owner)
    billing_services.organization_plan_set(organization=organization, plan_name="enterprise")
    _row, full_key = api_key_create(organization=organization, name="contract", audit=False)
    return Platform(
        coins=ids,
        organization=organization,
        owner=owner,
        password=password,
        api_key=full_key,
        access_token=str(session_start(user=owner).access),
    )


@pytest.fixture
def purge_broker():
    """Tasks queued by a web process (verification emails) must not wait in the test broker for the
    next test that starts a worker."""
    yield
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
