"""Stripe webhooks: verified, stored once, applied exactly once and in the right order, whatever the
order, repetition or failures of the deliveries; the plan seen by /v1/limits follows."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from billing import subscriptions, webhooks
from billing.models import OrganizationPlan, Plan, StripeEvent
from tests.stripe_billing.conftest import WEBHOOK, now_s, signed_post
from tests.stripe_standin.webhooks import event, signature_header


@pytest.fixture
def subscriber(synced, tenant):
    """An organization with a Stripe customer (after a checkout) and a helper that makes Stripe
    subscription payloads for it: ``sub(plan, status=..., **fields)``."""
    t = tenant()
    assert (
        t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json").status_code == 201
    )
    customer = OrganizationPlan.objects.get(organization=t.org).stripe_customer_id

    def sub(plan_name: str = "developer", **fields):
        plan = Plan.objects.get(name=plan_name)
        return synced.create_subscription(
            customer=customer,
            items=[{"price": plan.stripe_price_id, "quantity": 1}, {"price": plan.stripe_overage_price_id}],
            metadata={"organization_id": str(t.org.pk), "plan": plan_name},
            **fields,
        )

    t.customer = customer  # type: ignore[attr-defined]
    t.sub = sub  # type: ignore[attr-defined]
    return t


def _plan(t) -> str:
    return t.limits()["plan"]["name"]


# --- verification ----------------------------------------------------------------------------------
def test_a_forged_signature_is_refused_and_nothing_is_stored(client, synced):
    body = json.dumps(event("customer.subscription.updated", {"id": "sub_x"})).encode()
    response = signed_post(client, body, secret="whsec_not_ours")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"].endswith("/problems/webhook-invalid")
    assert response.json()["request_id"] == response["X-Request-ID"]  # operators can find the refusal
    assert StripeEvent.objects.count() == 0


def test_a_stale_timestamp_or_a_missing_header_or_an_altered_body_is_refused(client, synced):
    body = json.dumps(event("invoice.paid", {"id": "in_x"})).encode()
    assert signed_post(client, body, timestamp=now_s() - 301).status_code == 400
    assert client.post(WEBHOOK, data=body, content_type="application/json").status_code == 400
    header = signature_header(body, "whsec_test_candlestack")
    tampered = body.replace(b"in_x", b"in_y")
    response = client.post(
        WEBHOOK, data=tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert StripeEvent.objects.count() == 0
    assert signed_post(client, body, timestamp=now_s() - 250).status_code == 200  # inside the tolerance


def test_without_a_webhook_secret_the_endpoint_answers_503(client, synced, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    body = json.dumps(event("invoice.paid", {"id": "in_x"})).encode()
    response = signed_post(client, body)
    assert response.status_code == 503 and StripeEvent.objects.count() == 0


def test_an_unknown_type_is_stored_answered_and_ignored(deliver, synced):
    response = deliver("radar.early_fraud_warning.created", {"id": "issfr_1"})
    assert response.status_code == 200 and response.json()["duplicate"] is False
    row = StripeEvent.objects.get()
    assert row.status == "ignored" and row.type == "radar.early_fraud_warning.created"


# --- exactly once ----------------------------------------------------------------------------------
def test_a_duplicate_delivery_is_applied_once(deliver, subscriber):
    obj = subscriber.sub("developer")
    first = deliver("customer.subscription.created", obj, id="evt_dup_1")
    second = deliver("customer.subscription.created", obj, id="evt_dup_1")
    assert first.json()["duplicate"] is False and second.json()["duplicate"] is True
    assert StripeEvent.objects.filter(event_id="evt_dup_1", status="applied").count() == 1
    changes = AuditEvent.objects.filter(organization=subscriber.org, action="billing.subscription_changed")
    assert changes.count() == 1
    assert _plan(subscriber) == "developer"
    assert webhooks.event_apply(event_id="evt_dup_1") == "already applied"


# --- the subscription's life ---------------------------------------------------------------------------
def test_checkout_completed_fetches_the_subscription_and_grants_the_plan(deliver, synced, tenant):
    t = tenant()
    session = t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").json()
    assert _plan(t) == "free"
    done = synced.complete_checkout(session["id"])
    response = deliver("checkout.session.completed", done["session"])
    assert response.status_code == 200
    assert _plan(t) == "pro"
    row = OrganizationPlan.objects.get(organization=t.org)
    assert row.stripe_subscription_id == done["subscription"]["id"] and row.status == "active"
    assert any(r["path"].startswith("/v1/subscriptions/") for r in synced.requests())
    # then Stripe's own subscription event (older than the fetched state or not) changes nothing
    deliver("customer.subscription.created", done["subscription"], created=now_s() - 5)
    assert _plan(t) == "pro"


def test_reordered_deliveries_keep_the_newest_state(deliver, subscriber):
    t, obj = subscriber, subscriber.sub("developer")
    upgraded = {
        **obj,
        "items": subscriber.sub("pro")["items"],
        "metadata": {**obj["metadata"], "plan": "pro"},
    }
    deliver("customer.subscription.updated", upgraded, created=now_s())
    assert _plan(t) == "pro"
    deliver("customer.subscription.created", obj, created=now_s() - 60)  # arrives late, older
    assert _plan(t) == "pro"
    assert StripeEvent.objects.get(type="customer.subscription.created").outcome.startswith("skipped: older")


def test_a_late_update_after_deleted_never_resurrects(deliver, subscriber):
    t, obj = subscriber, subscriber.sub("developer")
    deliver("customer.subscription.created", obj, created=now_s() - 100)
    assert _plan(t) == "developer"
    deliver("customer.subscription.deleted", {**obj, "status": "canceled"}, created=now_s() - 10)
    assert _plan(t) == "free"
    deliver("customer.subscription.updated", {**obj, "status": "active"}, created=now_s() - 50)
    assert _plan(t) == "free"
    deliver(
        "customer.subscription.updated", {**obj, "status": "active"}, created=now_s() + 5
    )  # even a newer one
    assert _plan(t) == "free"
    assert OrganizationPlan.objects.get(organization=t.org).status == "canceled"


def test_a_late_event_of_an_older_subscription_leaves_the_current_one_alone(deliver, subscriber):
    t = subscriber
    old, new = t.sub("developer"), t.sub("pro")
    deliver("customer.subscription.created", old, created=now_s() - 300)
    deliver("customer.subscription.deleted", {**old, "status": "canceled"}, created=now_s() - 200)
    deliver("customer.subscription.created", new, created=now_s() - 100)
    assert _plan(t) == "pro"
    deliver(
        "customer.subscription.deleted", {**old, "status": "canceled"}, id="evt_old_again", created=now_s()
    )
    assert _plan(t) == "pro"


def test_payment_failure_past_due_grace_then_free_then_paid_again(
    deliver, subscriber, settings, django_capture_on_commit_callbacks
):
    settings.BILLING_PAST_DUE_GRACE_DAYS = 7
    t, obj = subscriber, subscriber.sub("developer")
    deliver("customer.subscription.created", obj, created=now_s() - 100)
    invoice = {"id": "in_1", "object": "invoice", "customer": t.customer, "subscription": obj["id"]}
    deliver("invoice.payment_failed", invoice, created=now_s() - 50)
    limits = t.limits()
    assert limits["plan"]["name"] == "developer"  # limits kept during the grace period
    assert limits["billing"]["status"] == "past_due"
    grace_end = OrganizationPlan.objects.get(organization=t.org).past_due_since + timedelta(days=7)
    assert limits["billing"]["grace_ends_at"].startswith(grace_end.strftime("%Y-%m-%dT%H:%M"))
    overview = t.jwt().get("/v1/account/billing").json()
    assert (
        overview["subscription"]["status"] == "past_due"
        and overview["subscription"]["past_due_grace_ends_at"]
    )
    # Stripe's own subscription.updated (past_due) repeats it: the grace period does not restart
    deliver("customer.subscription.updated", {**obj, "status": "past_due"}, created=now_s() - 40)
    assert OrganizationPlan.objects.get(organization=t.org).past_due_since + timedelta(days=7) == grace_end
    assert subscriptions.past_due_enforce(now=timezone.now() + timedelta(days=6)) == 0
    assert _plan(t) == "developer"
    with django_capture_on_commit_callbacks(execute=True):  # the periodic task, 8 days later
        assert subscriptions.past_due_enforce(now=timezone.now() + timedelta(days=8)) == 1
    assert _plan(t) == "free"
    assert AuditEvent.objects.filter(organization=t.org, action="billing.grace_ended").exists()
    deliver("invoice.paid", invoice, created=now_s() - 5)
    limits = t.limits()
    assert limits["plan"]["name"] == "developer" and limits["billing"] is None


def test_unpaid_means_free(deliver, subscriber):
    t, obj = subscriber, subscriber.sub("pro")
    deliver("customer.subscription.created", obj, created=now_s() - 100)
    deliver("customer.subscription.updated", {**obj, "status": "unpaid"}, created=now_s() - 10)
    assert _plan(t) == "free"


def test_cancel_at_period_end_keeps_the_plan_until_the_subscription_ends(deliver, subscriber):
    t, obj = subscriber, subscriber.sub("developer")
    deliver("customer.subscription.created", obj, created=now_s() - 100)
    deliver("customer.subscription.updated", {**obj, "cancel_at_period_end": True}, created=now_s() - 50)
    assert _plan(t) == "developer"
    overview = t.jwt().get("/v1/account/billing").json()
    assert overview["subscription"]["cancel_at_period_end"] is True and overview["next_invoice"] is None
    deliver("customer.subscription.deleted", {**obj, "status": "canceled"}, created=now_s() - 5)
    assert _plan(t) == "free"


def test_customer_deleted_ends_everything_and_the_next_purchase_gets_a_new_customer(
    deliver, subscriber, synced
):
    t, obj = subscriber, subscriber.sub("developer")
    deliver("customer.subscription.created", obj, created=now_s() - 100)
    deliver(
        "customer.deleted", {"id": t.customer, "object": "customer", "deleted": True}, created=now_s() - 5
    )
    assert _plan(t) == "free"
    row = OrganizationPlan.objects.get(organization=t.org)
    assert row.stripe_customer_id == "" and row.status == "canceled"
    assert t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").status_code == 201
    assert OrganizationPlan.objects.get(organization=t.org).stripe_customer_id not in ("", t.customer)


def test_stripe_down_while_applying_dead_letters_the_event_and_a_replay_applies_it(
    deliver, synced, tenant, django_capture_on_commit_callbacks
):
    from apiplatform.jobs.models import DeadLetter

    t = tenant()
    session = t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").json()
    done = synced.complete_checkout(session["id"])
    synced.faults(mode="error", path_prefix="/v1/subscriptions")
    assert deliver("checkout.session.completed", done["session"]).status_code == 200  # stored: 2xx
    row = StripeEvent.objects.get(type="checkout.session.completed")
    assert row.status == "failed" and "StripeUnavailable" in row.error
    assert DeadLetter.objects.filter(task_name="billing.apply_stripe_event").exists()
    assert _plan(t) == "free"
    synced.faults(mode="ok")
    with django_capture_on_commit_callbacks(execute=True):  # the admin's replay action, then the task
        assert webhooks.event_requeue(event_id=row.event_id) is True
    row.refresh_from_db()
    assert row.status == "applied" and _plan(t) == "pro"
