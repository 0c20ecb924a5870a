"""End to end across processes: Stripe's deliveries reach a real gunicorn, a real Celery worker applies
them, and the plan seen through the gateway follows — duplicated and reordered deliveries included."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from accounts.services.sessions import session_start
from billing.models import StripeEvent
from tests.ingestion_tasks.conftest import wait_until
from tests.stripe_billing.processes import platform_with_stripe
from tests.stripe_standin.fixtures import TEST_WEBHOOK_SECRET
from tests.stripe_standin.webhooks import event, signature_header

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processes(stripe_env, plans, tmp_path, django_db_blocker):
    with platform_with_stripe(stripe_env, tmp_path) as running:
        yield running


def _deliver(base: str, obj: dict, type_: str, *, created: int | None = None, id: str | None = None):  # noqa: A002
    body = json.dumps(event(type_, obj, created=created, id=id)).encode()
    headers = {
        "Stripe-Signature": signature_header(body, TEST_WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{base}/billing/stripe/webhook", content=body, headers=headers, timeout=10)


def test_a_purchase_confirmed_by_webhook_reaches_the_gateway_of_another_process(
    processes, stripe_env, tenant
):
    base, worker = processes
    t = tenant()
    jwt = {"Authorization": f"Bearer {session_start(user=t.owner).access}"}
    key = {"X-API-Key": t.key}

    def plan() -> str:
        return httpx.get(f"{base}/v1/limits", headers=key, timeout=10).json()["plan"]["name"]

    session = httpx.post(f"{base}/v1/account/billing/checkout", json={"plan": "pro"}, headers=jwt, timeout=10)
    assert session.status_code == 201, session.text
    assert plan() == "free"  # the redirect grants nothing
    done = stripe_env.complete_checkout(session.json()["id"])
    subscription = done["subscription"]
    now = int(time.time())

    first = _deliver(
        base, done["session"], "checkout.session.completed", created=now - 30, id="evt_e2e_checkout"
    )
    again = _deliver(
        base, done["session"], "checkout.session.completed", created=now - 30, id="evt_e2e_checkout"
    )
    assert first.status_code == 200 and again.json()["duplicate"] is True
    wait_until(lambda: plan() == "pro", timeout=30, message="the worker applying checkout.session.completed")

    # Stripe's later cancellation arrives before its own older "created": the newest state wins
    _deliver(base, {**subscription, "status": "canceled"}, "customer.subscription.deleted", created=now - 5)
    _deliver(base, subscription, "customer.subscription.created", created=now - 29)
    wait_until(
        lambda: (
            StripeEvent.objects.filter(status="received").count() == 0
            and StripeEvent.objects.filter(status="applied").count() == 3
        ),
        timeout=30,
        message="every event applied",
    )
    assert plan() == "free"
    outcomes = dict(StripeEvent.objects.values_list("type", "outcome"))
    assert outcomes["customer.subscription.created"].startswith("skipped")
    assert "billing.apply_stripe_event" in worker.log()
