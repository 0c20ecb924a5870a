"""Stripe webhooks: receive (verify, store once, answer at once) and apply (a task, exactly once).

``POST /billing/stripe/webhook`` calls :func:`event_receive`: the raw body is verified with
``stripe.Webhook.construct_event`` (``STRIPE_WEBHOOK_SECRET``, ``STRIPE_WEBHOOK_TOLERANCE_SECONDS``);
a bad or missing signature or a stale timestamp stores nothing. A verified event is stored under
its id (the primary key: a repeated delivery finds the row and changes nothing) and the task
``billing.apply_stripe_event`` is queued after the commit.

:func:`event_apply` runs in that task: it locks the event row, applies a ``received`` event once and
marks it ``applied`` (or ``ignored`` for a type we do not handle) in the same transaction as its
effect. Stripe unreachable → the task retries; retries exhausted → dead letter (replayable from
the admin, as is the event itself), the event marked ``failed``.

Handled: ``checkout.session.completed`` (the subscription is fetched from Stripe and applied),
``customer.subscription.created|updated|deleted|paused|resumed``, ``invoice.paid``,
``invoice.payment_failed``, ``customer.deleted``. Order-safety lives in ``billing.subscriptions``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import services, subscriptions
from billing.models import StripeEvent, StripeEventStatus
from billing.stripe_api import BillingNotConfigured, StripeRejected

logger = logging.getLogger(__name__)

HANDLED_TYPES = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "invoice.paid",
        "invoice.payment_failed",
        "customer.deleted",
    }
)


class BadWebhook(ValueError):
    """The delivery is not a valid Stripe event for us (signature, timestamp, body)."""


def event_receive(*, payload: bytes, signature: str | None) -> tuple[StripeEvent, bool]:
    """Verify and store one delivery; returns (event row, whether it is new). A new event is
    queued for :func:`event_apply` once stored. Raises :class:`BadWebhook` (nothing stored) or
    ``BillingNotConfigured`` (no webhook secret)."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise BillingNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    if not signature:
        raise BadWebhook("missing Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=int(settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
        )
    except stripe.SignatureVerificationError as exc:
        raise BadWebhook(
            "signature verification failed (wrong secret, altered body or stale timestamp)"
        ) from exc
    except ValueError as exc:
        raise BadWebhook("the body is not a JSON event") from exc
    data = json.loads(payload)
    event_id, type_ = data.get("id"), data.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(type_, str) or not type_:
        raise BadWebhook("the event has no id or type")
    try:
        created = datetime.fromtimestamp(int(data.get("created")), tz=UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadWebhook("the event has no valid created timestamp") from exc
    try:
        with transaction.atomic():
            row, new = StripeEvent.objects.get_or_create(
                event_id=event_id[:255],
                defaults={
                    "type": type_[:100],
                    "created": created,
                    "livemode": bool(data.get("livemode")),
                    "payload": data,
                },
            )
            if new:
                services.stripe_event_queue(event_id=row.event_id)
    except IntegrityError:  # two deliveries of the same event at once: the other one stored it
        return StripeEvent.objects.get(event_id=event_id[:255]), False
    logger.info("stripe event %s (%s) %s", event_id, type_, "stored" if new else "already received")
    return row, new


def event_requeue(*, event_id: str) -> bool:
    """Queue a stored event to be applied again (admin replay of a failed event); False if it is
    already applied or ignored."""
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().filter(event_id=event_id).first()
        if row is None or row.status in (StripeEventStatus.APPLIED, StripeEventStatus.IGNORED):
            return False
        row.status, row.error = StripeEventStatus.RECEIVED, ""
        row.save(update_fields=["status", "error"])
        services.stripe_event_queue(event_id=event_id)
    return True


def events_requeue_stale(*, older_than_seconds: int = 300) -> int:
    """Queue again the events still ``received`` after ``older_than_seconds`` (their first queueing
    was lost: broker down, worker killed before it acknowledged). Applying is idempotent."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        StripeEvent.objects.filter(status=StripeEventStatus.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("event_id", flat=True)[:1000]
    )
    with transaction.atomic():
        for event_id in ids:
            services.stripe_event_queue(event_id=event_id)
    return len(ids)


def event_failed(*, event_id: str, error: str) -> None:
    """The apply task gave up (dead-lettered): the event shows it in the admin."""
    StripeEvent.objects.filter(event_id=event_id).exclude(status=StripeEventStatus.APPLIED).update(
        status=StripeEventStatus.FAILED, error=error[:4000]
    )


def event_apply(*, event_id: str) -> str:
    """Apply one stored event exactly once (see the module docstring). Returns the outcome."""
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().filter(event_id=event_id).first()
        if row is None:
            return "unknown event"
        if row.status in (StripeEventStatus.APPLIED, StripeEventStatus.IGNORED):
            return f"already {row.status}"
        if row.type not in HANDLED_TYPES:
            row.status, row.outcome, row.applied_at = (
                StripeEventStatus.IGNORED,
                "type not handled",
                timezone.now(),
            )
            row.save(update_fields=["status", "outcome", "applied_at"])
            return row.outcome
        outcome, organization = _dispatch(row)
        row.status, row.outcome, row.error = StripeEventStatus.APPLIED, outcome[:255], ""
        row.applied_at = timezone.now()
        row.organization = organization
        row.save(update_fields=["status", "outcome", "error", "applied_at", "organization"])
    logger.info("stripe event %s (%s): %s", row.event_id, row.type, outcome)
    return outcome


def _dispatch(row: StripeEvent) -> tuple[str, Any]:
    obj = (row.payload.get("data") or {}).get("object") or {}
    at = row.created
    source = f"{row.type} {row.event_id}"
    if row.type == "customer.deleted":
        customer_id = str(obj.get("id") or "")
        org = subscriptions.organization_for(customer_id=customer_id)
        return subscriptions.customer_deleted(customer_id=customer_id, at=at, source=source), org
    if row.type.startswith("customer.subscription."):
        state = subscriptions.state_of_subscription(obj, at=at)
        if row.type == "customer.subscription.deleted" and state.status not in subscriptions.ENDED:
            state = subscriptions.SubscriptionState(**{**state.__dict__, "status": "canceled"})
        org = subscriptions.organization_for(customer_id=state.customer_id, hint=state.organization_hint)
        if org is None:
            return "skipped: no organization for this subscription", None
        return subscriptions.subscription_apply(organization=org, state=state, source=source), org
    if row.type == "checkout.session.completed":
        customer = str(obj.get("customer") or "")
        hint = str(obj.get("client_reference_id") or (obj.get("metadata") or {}).get("organization_id") or "")
        org = subscriptions.organization_for(customer_id=customer, hint=hint)
        subscription_id = obj.get("subscription")
        if org is None:
            return "skipped: no organization for this checkout", None
        if obj.get("mode") != "subscription" or not isinstance(subscription_id, str) or not subscription_id:
            return "skipped: not a subscription checkout", org
        try:
            state = subscriptions.subscription_fetch(subscription_id, at=at)
        except StripeRejected as exc:
            if exc.status == 404:
                return "skipped: the subscription no longer exists at Stripe", org
            raise
        return subscriptions.subscription_apply(organization=org, state=state, source=source), org
    # invoice.paid / invoice.payment_failed
    subscription_id = obj.get("subscription")
    if not isinstance(subscription_id, str):  # newer API versions: under parent.subscription_details
        details = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        subscription_id = details if isinstance(details, str) else ""
    if not subscription_id:
        return "skipped: not a subscription invoice", None
    org = subscriptions.organization_for(customer_id=str(obj.get("customer") or ""))
    if org is None:
        return "skipped: no organization for this invoice", None
    status = "active" if row.type == "invoice.paid" else "past_due"
    outcome = subscriptions.subscription_status_apply(
        organization=org, subscription_id=subscription_id, status=status, at=at, source=source
    )
    return outcome, org
