"""Subscriptions: what a customer buys through Stripe and what it puts the organization on.

Customer-facing actions (the management API and the portal call these):

* :func:`customer_ensure` — the organization's one Stripe Customer, created on first need under a
  row lock and with an idempotency key (two concurrent upgrades never create two customers);
* :func:`checkout_start` — a Checkout Session (mode ``subscription``). **It grants nothing**: the
  plan changes only when Stripe's webhook confirms the subscription (:func:`subscription_apply`);
* :func:`portal_start` — a Customer Portal session (payment methods, invoices, plan change, cancel);
* :func:`invoices_list` and :func:`overview` (plan, subscription, credits, overage, next invoice).

State from Stripe (``billing.webhooks`` calls these, exactly once per event):

* :func:`subscription_apply` — a subscription's state, **order-safe**: Stripe does not deliver
  events in order, so each state carries the time Stripe produced it (the event's ``created``) and
  an older state never overwrites a newer one; an ended subscription (``canceled``,
  ``incomplete_expired``) never comes back; a late event of an older subscription never touches
  the organization's current one.
* What a status means: ``active``/``trialing`` → the subscribed plan's limits; ``past_due`` → the
  limits are kept for ``BILLING_PAST_DUE_GRACE_DAYS`` (``/v1/limits`` shows a ``billing`` warning),
  then the default plan (:func:`past_due_enforce`, periodic); ``unpaid``, ``canceled``,
  ``incomplete_expired``, ``paused`` → the default plan; ``incomplete`` (first payment pending) →
  nothing changes yet. Every change goes through ``billing.services.organization_plan_set`` (the
  gateway sees it on the next request) and is an audit event.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services.audit import audit_record
from billing import selectors, services
from billing.limits import month_bounds
from billing.models import OrganizationPlan, Plan, SubscriptionStatus
from billing.stripe_api import StripeRejected, client, errors

logger = logging.getLogger(__name__)

S = SubscriptionStatus
LIVE = frozenset({S.ACTIVE, S.TRIALING})
KEEPS_PLAN = LIVE | {S.PAST_DUE}  # (past_due: during the grace period)
ENDED = frozenset({S.CANCELED, S.UNPAID, S.INCOMPLETE_EXPIRED, S.PAUSED})
TERMINAL = frozenset({S.CANCELED, S.INCOMPLETE_EXPIRED})  # a subscription never leaves these
# When two states carry the same second, the one further along wins (a subscription moves this way).
_RANK: dict[str, int] = {S.INCOMPLETE: 0, S.TRIALING: 1, S.ACTIVE: 1, S.PAST_DUE: 2, S.UNPAID: 3, S.PAUSED: 3}
_RANK.update({S.INCOMPLETE_EXPIRED: 4, S.CANCELED: 4})


class PlanNotPurchasable(ValueError):
    """The plan cannot be bought through Checkout (unknown, not public, free, or not synced)."""


class SubscriptionExists(Exception):
    """The organization already has a subscription: plan changes go through the Customer Portal."""


class NoBillingAccount(Exception):
    """The organization has no Stripe customer yet (nothing bought)."""


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value not in (None, "") else None


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of a Stripe object or of a plain dict (webhook payloads are plain JSON)."""
    try:
        value = obj[name]
    except (KeyError, TypeError, IndexError):
        return default
    return default if value is None else value


# --- the customer and the sessions -------------------------------------------------------------------
def customer_ensure(*, organization: Organization, actor: User | None = None) -> str:
    """The organization's Stripe Customer id, created on first need.

    The assignment row is locked while Stripe is asked, so two concurrent upgrades wait for each
    other and the second finds the first's customer; the idempotency key (organization and
    generation) makes a retried create return the same customer."""
    with transaction.atomic():
        row = services.assignment_for_update(organization_id=organization.pk)
        if row.stripe_customer_id:
            return row.stripe_customer_id
        params: dict[str, Any] = {
            "name": organization.name,
            "metadata": {"organization_id": str(organization.pk), "organization_slug": organization.slug},
        }
        if actor is not None and actor.email:
            params["email"] = actor.email
        with errors("create customer"):
            customer = client().v1.customers.create(
                params=params,  # type: ignore[arg-type]
                options={
                    "idempotency_key": f"candlestack-customer-{organization.pk}-{row.stripe_customer_epoch}"
                },
            )
        row.stripe_customer_id = customer.id
        row.save(update_fields=["stripe_customer_id"])
        audit_record(
            organization=organization,
            actor=actor,
            action="billing.customer_created",
            target_type="stripe_customer",
            target_id=customer.id,
        )
        return customer.id


def purchasable_plan(name: str) -> Plan:
    plan = Plan.objects.filter(name=name).first()
    if plan is None or not plan.is_public or not plan.is_paid:
        choices = ", ".join(
            Plan.objects.filter(is_public=True, price_cents_monthly__gt=0).values_list("name", flat=True)
        )
        raise PlanNotPurchasable(f"{name!r} is not a plan you can buy (plans: {choices or 'none'}).")
    if not plan.stripe_price_id or (plan.overage and not plan.stripe_overage_price_id):
        raise PlanNotPurchasable(f"Plan {name!r} is not on sale yet (its Stripe prices are not set up).")
    return plan


def _portal_url(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{path}"


def next_month_start(now: datetime) -> datetime:
    return (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)


def checkout_start(*, organization: Organization, plan_name: str, actor: User | None) -> dict[str, Any]:
    """A Stripe Checkout Session for ``plan_name``; returns ``{"id", "url", "expires_at"}``.

    The subscription's billing cycle is anchored on the 1st of the month (UTC), the same calendar
    month the credit quota runs on; the first month is prorated by Stripe."""
    plan = purchasable_plan(plan_name)
    row = OrganizationPlan.objects.filter(organization_id=organization.pk).first()
    if row is not None and row.stripe_subscription_id and row.status in KEEPS_PLAN | {S.INCOMPLETE}:
        raise SubscriptionExists(
            f"The organization already has a subscription ({row.status}); change or cancel it in the "
            "billing portal (POST /v1/account/billing/portal)."
        )
    customer = customer_ensure(organization=organization, actor=actor)
    items: list[dict[str, Any]] = [{"price": plan.stripe_price_id, "quantity": 1}]
    if plan.overage:
        items.append({"price": plan.stripe_overage_price_id})  # metered: no quantity
    metadata = {"organization_id": str(organization.pk), "plan": plan.name}
    anchor = int(next_month_start(timezone.now()).timestamp())
    with errors("create checkout session"):
        session = client().v1.checkout.sessions.create(
            params={  # type: ignore[arg-type]
                "mode": "subscription",
                "customer": customer,
                "client_reference_id": str(organization.pk),
                "line_items": items,
                "success_url": _portal_url(
                    "/portal/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"
                ),
                "cancel_url": _portal_url("/portal/billing?checkout=canceled"),
                "metadata": metadata,
                "subscription_data": {"metadata": metadata, "billing_cycle_anchor": anchor},
            },
            options={"idempotency_key": f"candlestack-checkout-{organization.pk}-{uuid.uuid4().hex}"},
        )
    audit_record(
        organization=organization,
        actor=actor,
        action="billing.checkout_started",
        target_type="plan",
        target_id=plan.name,
        data={"checkout_session": session.id},
    )
    return {"id": session.id, "url": session.url, "expires_at": _ts(_get(session, "expires_at"))}


def portal_start(*, organization: Organization, actor: User | None) -> dict[str, Any]:
    """A Stripe Customer Portal session for the organization's customer; ``{"url"}``."""
    row = OrganizationPlan.objects.filter(organization_id=organization.pk).first()
    if row is None or not row.stripe_customer_id:
        raise NoBillingAccount("Nothing has been bought yet: start with POST /v1/account/billing/checkout.")
    with errors("create portal session"):
        session = client().v1.billing_portal.sessions.create(
            params={"customer": row.stripe_customer_id, "return_url": _portal_url("/portal/billing")},
            options={"idempotency_key": f"candlestack-portal-{organization.pk}-{uuid.uuid4().hex}"},
        )
    audit_record(organization=organization, actor=actor, action="billing.portal_opened")
    return {"url": session.url}


def invoices_list(
    *, organization: Organization, limit: int, starting_after: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """The organization's invoices at Stripe, newest first: (rows, has_more)."""
    row = OrganizationPlan.objects.filter(organization_id=organization.pk).first()
    if row is None or not row.stripe_customer_id:
        return [], False
    params: dict[str, Any] = {"customer": row.stripe_customer_id, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    try:
        with errors("list invoices"):
            page = client().v1.invoices.list(params=params)  # type: ignore[arg-type]
    except StripeRejected as exc:
        if exc.status == 404 or exc.code == "resource_missing":  # an unknown cursor
            raise ValueError("starting_after is not an invoice of this organization") from exc
        raise
    rows = [
        {
            "id": inv.id,
            "number": _get(inv, "number", ""),
            "status": _get(inv, "status", ""),
            "currency": _get(inv, "currency", ""),
            "amount_due": _get(inv, "amount_due", 0),
            "amount_paid": _get(inv, "amount_paid", 0),
            "created": _ts(_get(inv, "created")),
            "period_start": _ts(_get(inv, "period_start")),
            "period_end": _ts(_get(inv, "period_end")),
            "hosted_invoice_url": _get(inv, "hosted_invoice_url", ""),
            "invoice_pdf": _get(inv, "invoice_pdf", ""),
        }
        for inv in page.data
    ]
    return rows, bool(page.has_more)


def overage_amount_cents(*, overage_credits: int, cents_per_1000: int) -> int:
    """What ``overage_credits`` cost: each started 1,000 at the plan's price (Stripe's
    ``transform_quantity`` divide by 1,000, round up)."""
    return -(-overage_credits // 1000) * cents_per_1000 if overage_credits > 0 else 0


def overview(*, organization: Organization, now: datetime | None = None) -> dict[str, Any]:
    """What ``GET /v1/account/billing`` shows (no Stripe call: from our tables)."""
    now = now or timezone.now()
    row = (
        OrganizationPlan.objects.select_related("plan", "subscribed_plan")
        .filter(organization_id=organization.pk)
        .first()
    )
    plan = row.plan if row is not None else selectors.default_plan()
    month, _ = month_bounds(int(now.timestamp() * 1_000_000))
    month_start = datetime(int(month[:4]), int(month[4:]), 1, tzinfo=UTC)
    used = selectors.organization_credits_in_month(organization_id=organization.pk, month_start=month_start)
    over = max(0, used - plan.monthly_credits) if plan.overage else 0
    over_cents = overage_amount_cents(overage_credits=over, cents_per_1000=plan.overage_cents_per_1000)
    subscription = None
    next_invoice = None
    if row is not None and row.stripe_subscription_id:
        grace_end = selectors.grace_ends_at(row)
        subscription = {
            "id": row.stripe_subscription_id,
            "status": row.status,
            "plan": row.subscribed_plan.name if row.subscribed_plan else None,
            "current_period_start": row.current_period_start,
            "current_period_end": row.current_period_end,
            "cancel_at_period_end": row.cancel_at_period_end,
            "past_due_grace_ends_at": grace_end,
        }
        if row.status in KEEPS_PLAN and not row.cancel_at_period_end and row.subscribed_plan is not None:
            next_invoice = {
                "at": row.current_period_end or next_month_start(now),
                "estimate_cents": row.subscribed_plan.price_cents_monthly + over_cents,
                "currency": settings.STRIPE_CURRENCY.lower(),
            }
    return {
        "organization": organization.slug,
        "plan": {
            "name": plan.name,
            "display_name": plan.display_name or plan.name,
            "price_cents_monthly": plan.price_cents_monthly,
            "monthly_credits": plan.monthly_credits,
        },
        "subscription": subscription,
        "credits": {
            "period": f"{month[:4]}-{month[4:]}",
            "included": plan.monthly_credits,
            "used": used,
            "remaining": max(0, plan.monthly_credits - used),
        },
        "overage": {
            "allowed": plan.overage,
            "credits": over,
            "price_cents_per_1000": plan.overage_cents_per_1000,
            "amount_cents": over_cents,
        },
        "next_invoice": next_invoice,
        "currency": settings.STRIPE_CURRENCY.lower(),
    }


# --- state from Stripe ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as Stripe described it at ``at`` (Stripe's clock)."""

    subscription_id: str
    customer_id: str
    status: str
    plan: Plan | None
    at: datetime
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    organization_hint: str = ""  # the subscription's metadata.organization_id, if any


def plan_of_subscription(obj: Any) -> Plan | None:
    """The plan a Stripe subscription pays for: a line's price id (our flat monthly price), else
    the ``plan`` in its metadata (set at checkout)."""
    price_ids = []
    for item in _get(_get(obj, "items", {}), "data", []) or []:
        price = _get(item, "price", {})
        price_ids.append(price if isinstance(price, str) else _get(price, "id", ""))
    price_ids = [p for p in price_ids if p]
    if price_ids:
        plan = Plan.objects.filter(stripe_price_id__in=price_ids).first()
        if plan is not None:
            return plan
    name = _get(_get(obj, "metadata", {}), "plan", "")
    return Plan.objects.filter(name=name).first() if name else None


def state_of_subscription(obj: Any, *, at: datetime) -> SubscriptionState:
    """A Stripe subscription object (webhook payload or API answer) as a :class:`SubscriptionState`.
    The period is on the subscription in older API versions and on its items in newer ones."""
    items = _get(_get(obj, "items", {}), "data", []) or []
    first = items[0] if items else {}
    customer = _get(obj, "customer", "")
    if not isinstance(customer, str):
        customer = _get(customer, "id", "")
    status = str(_get(obj, "status", ""))
    if status not in S.values:
        raise ValueError(f"unknown subscription status {status!r}")
    return SubscriptionState(
        subscription_id=str(_get(obj, "id", "")),
        customer_id=customer,
        status=status,
        plan=plan_of_subscription(obj),
        at=at,
        current_period_start=_ts(_get(obj, "current_period_start") or _get(first, "current_period_start")),
        current_period_end=_ts(_get(obj, "current_period_end") or _get(first, "current_period_end")),
        cancel_at_period_end=bool(_get(obj, "cancel_at_period_end", False)),
        organization_hint=str(_get(_get(obj, "metadata", {}), "organization_id", "")),
    )


def subscription_fetch(subscription_id: str, *, at: datetime) -> SubscriptionState:
    """The subscription as Stripe has it now (``at``: the time of the event that asked)."""
    with errors("retrieve subscription"):
        obj = client().v1.subscriptions.retrieve(subscription_id)
    return state_of_subscription(obj, at=at)


def organization_for(*, customer_id: str = "", hint: str = "") -> Organization | None:
    """The organization a Stripe object belongs to: by its customer, else the organization id we
    put in its metadata / ``client_reference_id``."""
    if customer_id:
        row = (
            OrganizationPlan.objects.select_related("organization")
            .filter(stripe_customer_id=customer_id)
            .first()
        )
        if row is not None:
            return row.organization
    if hint.isdigit():
        return Organization.objects.filter(pk=int(hint)).first()
    return None


def _effective_plan(status: str, subscribed: Plan | None, current: Plan, past_due_since, now) -> Plan:
    if status in LIVE and subscribed is not None:
        return subscribed
    if status == S.PAST_DUE and subscribed is not None:
        grace_end = past_due_since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
        return subscribed if now < grace_end else services.plan_default()
    if status == S.INCOMPLETE:
        return current
    return services.plan_default()


def _stale_reason(row: OrganizationPlan, state: SubscriptionState) -> str:
    """Why ``state`` must not be applied over ``row`` ("" = apply it)."""
    other = row.stripe_subscription_id and row.stripe_subscription_id != state.subscription_id
    if other:
        if state.status in ENDED or state.status == S.INCOMPLETE:
            return f"an older subscription ({state.subscription_id}) ended; the current one is untouched"
        if row.stripe_state_at is not None and state.at < row.stripe_state_at:
            return "older than the state applied"
        return ""
    if row.stripe_subscription_id and row.status in TERMINAL:
        return "the subscription has already ended"
    if row.stripe_state_at is not None:
        if state.at < row.stripe_state_at:
            return "older than the state applied"
        if state.at == row.stripe_state_at and _RANK.get(state.status, 0) < _RANK.get(row.status, 0):
            return "same second as the state applied, and not further along"
    return ""


def subscription_apply(
    *, organization: Organization, state: SubscriptionState, source: str, now: datetime | None = None
) -> str:
    """Apply a subscription's state to the organization, unless a newer one is already applied.
    Returns what it did (stored on the webhook event)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = services.assignment_for_update(organization_id=organization.pk)
        reason = _stale_reason(row, state)
        if reason:
            logger.info("stripe %s for organization %s not applied: %s", source, organization.pk, reason)
            return f"skipped: {reason}"
        if state.status in LIVE and state.plan is None:
            logger.error("subscription %s pays for no known plan (prices not synced?)", state.subscription_id)
            return "skipped: the subscription's price is not one of our plans"
        before_plan, before_status = row.plan.name, row.status
        past_due_since = None
        if state.status == S.PAST_DUE:
            past_due_since = (
                row.past_due_since if row.status == S.PAST_DUE and row.past_due_since else state.at
            )
        subscribed = state.plan or row.subscribed_plan
        plan = _effective_plan(state.status, subscribed, row.plan, past_due_since, now)
        services.organization_plan_set(
            organization=organization,
            plan_name=plan.name,
            status=state.status,
            stripe_subscription_id=state.subscription_id,
            stripe_customer_id=state.customer_id or row.stripe_customer_id,
            subscribed_plan=subscribed,
            current_period_start=state.current_period_start,
            current_period_end=state.current_period_end,
            cancel_at_period_end=state.cancel_at_period_end,
            past_due_since=past_due_since,
            stripe_state_at=state.at,
        )
        audit_record(
            organization=organization,
            actor=None,
            action="billing.subscription_changed",
            target_type="stripe_subscription",
            target_id=state.subscription_id,
            data={
                "source": source,
                "status": {"from": before_status, "to": state.status},
                "plan": {"from": before_plan, "to": plan.name},
                "cancel_at_period_end": state.cancel_at_period_end,
            },
        )
    logger.info(
        "organization %s: subscription %s %s -> %s, plan %s -> %s (%s)",
        organization.pk, state.subscription_id, before_status, state.status, before_plan, plan.name, source,
    )  # fmt: skip
    return f"applied: {state.status}, plan {plan.name}"


def subscription_status_apply(
    *, organization: Organization, subscription_id: str, status: str, at: datetime, source: str
) -> str:
    """An invoice event's consequence for the current subscription (``past_due`` after a failed
    payment, ``active`` after a paid one), order-safe like :func:`subscription_apply`."""
    row = OrganizationPlan.objects.filter(organization_id=organization.pk).first()
    if row is None or row.stripe_subscription_id != subscription_id:
        return "skipped: not the organization's current subscription"
    if status == S.PAST_DUE and row.status not in LIVE | {S.PAST_DUE}:
        return f"skipped: subscription is {row.status}"
    if status == S.ACTIVE and row.status not in {S.PAST_DUE, S.UNPAID}:
        return f"skipped: subscription is {row.status}"
    state = SubscriptionState(
        subscription_id=subscription_id,
        customer_id=row.stripe_customer_id,
        status=status,
        plan=row.subscribed_plan,
        at=at,
        current_period_start=row.current_period_start,
        current_period_end=row.current_period_end,
        cancel_at_period_end=row.cancel_at_period_end,
    )
    return subscription_apply(organization=organization, state=state, source=source)


def customer_deleted(*, customer_id: str, at: datetime, source: str) -> str:
    """The Stripe customer is gone: its subscription ended with it; the organization is back on
    the default plan and gets a new customer on its next purchase."""
    with transaction.atomic():
        row = (
            OrganizationPlan.objects.select_for_update()
            .select_related("organization")
            .filter(stripe_customer_id=customer_id)
            .first()
        )
        if row is None:
            return "skipped: no organization has this customer"
        organization = row.organization
        before = row.plan.name
        services.organization_plan_set(
            organization=organization,
            plan_name=services.plan_default().name,
            status=S.CANCELED,
            stripe_customer_id="",
            stripe_customer_epoch=row.stripe_customer_epoch + 1,
            cancel_at_period_end=False,
            past_due_since=None,
            stripe_state_at=max(at, row.stripe_state_at) if row.stripe_state_at else at,
        )
        audit_record(
            organization=organization,
            actor=None,
            action="billing.customer_deleted",
            target_type="stripe_customer",
            target_id=customer_id,
            data={"source": source, "plan": {"from": before, "to": services.plan_default().name}},
        )
    return "applied: customer deleted, default plan"


def past_due_enforce(*, now: datetime | None = None) -> int:
    """Move every organization whose ``past_due`` grace period has ended to the default plan
    (periodic; also safe to run at any time). Returns how many moved."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
    default = services.plan_default()
    moved = 0
    due = OrganizationPlan.objects.filter(status=S.PAST_DUE, past_due_since__lte=cutoff).exclude(plan=default)
    for organization_id in due.values_list("organization_id", flat=True):
        with transaction.atomic():
            row = services.assignment_for_update(organization_id=organization_id)
            if row.status != S.PAST_DUE or row.past_due_since is None or row.past_due_since > cutoff:
                continue
            before = row.plan.name
            services.organization_plan_set(organization=row.organization, plan_name=default.name)
            audit_record(
                organization=row.organization,
                actor=None,
                action="billing.grace_ended",
                target_type="stripe_subscription",
                target_id=row.stripe_subscription_id,
                data={
                    "plan": {"from": before, "to": default.name},
                    "past_due_since": row.past_due_since.isoformat(),
                },
            )
            moved += 1
            logger.info("organization %s: past_due grace ended, now on %s", organization_id, default.name)
    return moved
