"""Writes of the billing app.

Plans and assignments live in PostgreSQL; the gateway reads a copy of each organization's limits
from Redis (``billing.plan_cache``). Every write here republishes the copy after the transaction
commits, so the very next request in every process sees the change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from apiplatform import redis_access
from billing import selectors
from billing.limits import PlanLimits, month_bounds
from billing.models import OrganizationPlan, Plan
from billing.plan_cache import drop_plan, publish_plan
from billing.plans import DEFAULT_PLANS
from billing.redis_layout import month_key

logger = logging.getLogger(__name__)

PLAN_EDITABLE_FIELDS = {
    "display_name",
    "description",
    "rate_per_minute",
    "burst",
    "key_rate_per_minute",
    "monthly_credits",
    "endpoints",
    "timeframes",
    "price_cents_monthly",
    "overage",
    "overage_cents_per_1000",
    "stripe_product_id",
    "stripe_price_id",
    "stripe_overage_price_id",
    "is_public",
    "sort_order",
}

# The subscription fields of an assignment that may be set with its plan (admin; billing.subscriptions).
ASSIGNMENT_EDITABLE_FIELDS = {
    "status",
    "stripe_customer_id",
    "stripe_customer_epoch",
    "stripe_subscription_id",
    "subscribed_plan",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "past_due_since",
    "stripe_state_at",
}


class UnknownPlan(ValueError):
    pass


def _publish_later(organization_id: int, limits: PlanLimits) -> None:
    def publish() -> None:
        try:
            publish_plan(organization_id, limits)
        except redis.RedisError:
            # Stale limits would stay in Redis: drop them so the next request reloads from the DB.
            logger.exception("could not publish the plan of organization %s", organization_id)
            _forget(organization_id)

    transaction.on_commit(publish)


def _forget(organization_id: int) -> None:
    try:
        drop_plan(organization_id)
    except redis.RedisError:
        logger.exception("could not drop the cached plan of organization %s", organization_id)


@transaction.atomic
def organization_plan_set(*, organization, plan_name: str, **fields) -> OrganizationPlan:
    """Put ``organization`` on the plan named ``plan_name``; effective on its next request.

    A changed plan restarts the assignment (``started_at``). ``fields`` also sets subscription
    fields of the assignment (``ASSIGNMENT_EDITABLE_FIELDS``; the admin form)."""
    unknown = set(fields) - ASSIGNMENT_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    try:
        plan = Plan.objects.get(name=plan_name)
    except Plan.DoesNotExist:
        names = ", ".join(Plan.objects.values_list("name", flat=True))
        raise UnknownPlan(f"unknown plan {plan_name!r} (plans: {names})") from None
    now = timezone.now()
    row, created = OrganizationPlan.objects.select_for_update().get_or_create(
        organization_id=organization.pk,
        defaults={"plan": plan, "started_at": now, "updated_at": now, **fields},
    )
    if not created:
        if row.plan_id != plan.pk:
            row.started_at = now
        row.plan = plan
        row.updated_at = now
        for name, value in fields.items():
            setattr(row, name, value)
        row.save(update_fields=["plan", "started_at", "updated_at", *fields])
    limits = selectors.plan_limits(
        plan=plan, version=selectors.version_of(row.updated_at, plan.updated_at), assignment=row
    )
    _publish_later(organization.pk, limits)
    logger.info("organization %s is now on plan %s", organization.pk, plan.name)
    return row


def assignment_for_update(*, organization_id: int) -> OrganizationPlan:
    """The organization's assignment row, locked for the current transaction (created on the
    default plan when it has none, as the gateway's cold path would)."""
    row = OrganizationPlan.objects.select_for_update().filter(organization_id=organization_id).first()
    if row is None:
        now = timezone.now()
        OrganizationPlan.objects.get_or_create(
            organization_id=organization_id,
            defaults={"plan": plan_default(), "started_at": now, "updated_at": now},
        )
        row = OrganizationPlan.objects.select_for_update().get(organization_id=organization_id)
    return row


@transaction.atomic
def organization_plan_remove(*, organization_id: int) -> bool:
    """Take an organization off its assigned plan: it falls back to the default plan, and the
    gateway's copy of its limits is dropped after commit, so the very next request reloads them.
    Returns whether there was an assignment."""
    deleted, _ = OrganizationPlan.objects.filter(organization_id=organization_id).delete()
    transaction.on_commit(lambda: _forget(organization_id))
    if deleted:
        logger.info("organization %s is back on the default plan", organization_id)
    return bool(deleted)


@transaction.atomic
def plan_update(*, plan: Plan, **fields) -> Plan:
    """Change a plan's limits (admin, scripts); republishes them for every organization on it."""
    unknown = set(fields) - PLAN_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(plan, name, value)
    plan.updated_at = timezone.now()
    plan.full_clean()
    plan.save()
    plan_publish(plan=plan)
    return plan


def plan_publish(*, plan: Plan) -> int:
    """Republish (after commit) the limits of every organization on ``plan``; returns how many.

    Organizations without an assignment row use the default plan: ``organization_plan_load``
    gives them one on their first request, so they are covered here too."""
    rows = list(OrganizationPlan.objects.filter(plan=plan))

    def publish() -> None:
        try:
            r = redis_access.client("gateway")
            for start in range(0, len(rows), 500):
                pipe = r.pipeline(transaction=False)
                for row in rows[start : start + 500]:
                    limits = selectors.plan_limits(
                        plan=plan,
                        version=selectors.version_of(row.updated_at, plan.updated_at),
                        assignment=row,
                    )
                    publish_plan(row.organization_id, limits, pipeline=pipe)
                pipe.execute()
        except redis.RedisError:
            logger.exception("could not republish plan %s; dropping cached copies", plan.name)
            for row in rows:
                _forget(row.organization_id)

    transaction.on_commit(publish)
    return len(rows)


def plan_default() -> Plan:
    """The default plan's row, recreated from ``billing.plans`` if it is missing."""
    name = settings.BILLING_DEFAULT_PLAN
    plan = Plan.objects.filter(name=name).first()
    if plan is None:
        plan, _ = Plan.objects.get_or_create(
            name=name, defaults=DEFAULT_PLANS.get(name, DEFAULT_PLANS["free"])
        )
        logger.warning("default plan %r was missing; recreated it", name)
    return plan


def organization_plan_load(*, organization_id: int, now_us: int) -> PlanLimits:
    """Cold path of the gateway: Redis has no plan for the organization (first request, or Redis
    lost its data). Assign the default plan if needed, seed this month's credit counter from the
    usage already in PostgreSQL, and publish the limits."""
    with transaction.atomic():
        if not OrganizationPlan.objects.filter(organization_id=organization_id).exists():
            org = Organization.objects.filter(pk=organization_id).first()
            if org is not None:
                default = plan_default()
                now = timezone.now()
                OrganizationPlan.objects.get_or_create(
                    organization_id=organization_id,
                    defaults={"plan": default, "started_at": now, "updated_at": now},
                )
        limits = selectors.organization_plan_limits(organization_id=organization_id)
    month, _ = month_bounds(now_us)
    month_start = datetime(int(month[:4]), int(month[4:]), 1, tzinfo=UTC)
    used = selectors.organization_credits_in_month(organization_id=organization_id, month_start=month_start)
    r = redis_access.client("gateway")
    r.set(month_key(organization_id, month), used, nx=True, ex=40 * 86_400)
    publish_plan(organization_id, limits)
    return limits


def stripe_event_queue(*, event_id: str) -> None:
    """Queue ``billing.apply_stripe_event`` for a stored Stripe event once the current transaction
    commits. A broker that is down is logged, not raised: the event stays ``received`` and the
    periodic ``billing.requeue_stripe_events`` queues it again."""
    from billing import tasks  # the tasks module imports the webhooks, which import this one

    transaction.on_commit(lambda: tasks.apply_stripe_event.delay(event_id), robust=True)
