"""Reads of the billing app: plans, an organization's plan, usage reports. Nothing here writes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDay

from accounts.models import ApiKey
from apiplatform import redis_access
from billing import metering
from billing.limits import PlanLimits
from billing.models import (
    MAX_RATE_PER_MINUTE,
    OrganizationPlan,
    Plan,
    Refusal,
    StripeEvent,
    StripeEventStatus,
    SubscriptionStatus,
    UsageRecord,
)
from billing.plans import DEFAULT_PLANS
from billing.redis_layout import FAILURES_KEPT


def _csv(values: list[str] | None) -> str:
    values = [str(v) for v in (values or [])]
    return "*" if "*" in values else ",".join(values)


def plan_limits(*, plan: Plan, version: int, assignment: OrganizationPlan | None = None) -> PlanLimits:
    """The limits the gate enforces for ``plan`` (and, with the organization's ``assignment``, the
    billing warning it shows)."""
    return PlanLimits(
        name=plan.name,
        display_name=plan.display_name or plan.name,
        version=version,
        rate_per_minute=min(MAX_RATE_PER_MINUTE, max(1, plan.rate_per_minute)),
        burst=max(1, plan.burst),
        key_rate_per_minute=min(MAX_RATE_PER_MINUTE, max(1, plan.key_rate_per_minute)),
        monthly_credits=plan.monthly_credits,
        endpoints=_csv(plan.endpoints),
        timeframes=_csv(plan.timeframes),
        overage=plan.overage,
        billing_warning=billing_warning(assignment) if assignment is not None else "",
        concurrent_streams=plan.concurrent_streams,
    )


def grace_ends_at(assignment: OrganizationPlan) -> datetime | None:
    """While the subscription is ``past_due``: when its grace period ends (the plan's limits are
    kept until then, then the organization falls back to the default plan)."""
    if assignment.status != SubscriptionStatus.PAST_DUE or assignment.past_due_since is None:
        return None
    return assignment.past_due_since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)


def billing_warning(assignment: OrganizationPlan) -> str:
    """The gateway's compact form of a payment problem: ``past_due:<grace end, epoch s>`` or ""."""
    end = grace_ends_at(assignment)
    return f"past_due:{int(end.timestamp())}" if end is not None else ""


def version_of(*stamps: datetime) -> int:
    """A plan publication's version: the newest change (µs since the epoch) of plan or assignment."""
    return max(int(s.timestamp() * 1_000_000) for s in stamps)


def organization_plan_limits(*, organization_id: int) -> PlanLimits:
    """The organization's effective limits (the default plan when it has no assignment row)."""
    row = OrganizationPlan.objects.select_related("plan").filter(organization_id=organization_id).first()
    if row is not None:
        return plan_limits(
            plan=row.plan, version=version_of(row.updated_at, row.plan.updated_at), assignment=row
        )
    plan = default_plan()
    return plan_limits(plan=plan, version=version_of(plan.updated_at))


def default_plan() -> Plan:
    """The default plan (``BILLING_DEFAULT_PLAN``): its row, or, if the row is missing, an unsaved
    ``Plan`` built from its definition in ``billing.plans`` (``billing.services.plan_default``
    recreates the row; a read never does)."""
    name = settings.BILLING_DEFAULT_PLAN
    plan = Plan.objects.filter(name=name).first()
    if plan is None:
        plan = Plan(name=name, **DEFAULT_PLANS.get(name, DEFAULT_PLANS["free"]))
    return plan


def organization_credits_in_month(*, organization_id: int, month_start: datetime) -> int:
    """Credits already flushed to PostgreSQL for the month starting at ``month_start``."""
    total = UsageRecord.objects.filter(organization_id=organization_id, hour__gte=month_start).aggregate(
        c=Sum("credits")
    )["c"]
    return int(total or 0)


STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
GROUP_BY_FIELDS = {"day": "day", "endpoint": "endpoint", "key": "key_id"}


def usage_report(
    *, organization_id: int, start: date, end: date, group_by: str
) -> tuple[list[dict], dict[str, int]]:
    """Usage of one organization for the days ``start``..``end`` (inclusive, UTC), grouped.

    Returns (rows, totals); each row has the group value, ``requests``, ``credits`` and the
    requests per status class."""
    qs = _usage_rows(organization_id=organization_id, start=start, end=end)
    field = GROUP_BY_FIELDS[group_by]
    if group_by == "day":
        qs = qs.annotate(day=TruncDay("hour", tzinfo=UTC))
    grouped = qs.values(field, "status_class").annotate(requests=Sum("requests"), credits=Sum("credits"))
    return _fold(grouped, group_by)


def usage_breakdown(
    *, organization_id: int, start: date, end: date
) -> dict[str, tuple[list[dict], dict[str, int]]]:
    """:func:`usage_report` by day, by endpoint and by key at once, from one query (the portal's
    dashboard): ``{"day": (rows, totals), "endpoint": ..., "key": ...}``."""
    grouped = list(
        _usage_rows(organization_id=organization_id, start=start, end=end)
        .annotate(day=TruncDay("hour", tzinfo=UTC))
        .values("day", "endpoint", "key_id", "status_class")
        .annotate(requests=Sum("requests"), credits=Sum("credits"))
    )
    return {group_by: _fold(grouped, group_by) for group_by in GROUP_BY_FIELDS}


def _usage_rows(*, organization_id: int, start: date, end: date):
    start_dt = datetime.combine(start, time.min, tzinfo=UTC)
    end_dt = (  # the day after end (the last representable instant when end is the last date)
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        if end < date.max
        else datetime.max.replace(tzinfo=UTC)
    )
    return UsageRecord.objects.filter(organization_id=organization_id, hour__gte=start_dt, hour__lt=end_dt)


def _fold(grouped, group_by: str) -> tuple[list[dict], dict[str, int]]:
    """Sum aggregated items (``requests``, ``credits`` per ``status_class``) into one row per value of
    ``group_by``, ordered by it; and the totals."""
    field = GROUP_BY_FIELDS[group_by]
    rows: dict = {}
    for item in grouped:
        value = item[field]
        if isinstance(value, datetime):
            value = value.date().isoformat()
        row = rows.setdefault(
            value,
            {
                group_by: value,
                "requests": 0,
                "credits": 0,
                "by_status": {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
            },
        )
        row["requests"] += item["requests"]
        row["credits"] += item["credits"]
        row["by_status"][item["status_class"]] += item["requests"]
    ordered = [rows[k] for k in sorted(rows)]
    totals = {
        "requests": sum(r["requests"] for r in ordered),
        "credits": sum(r["credits"] for r in ordered),
    }
    return ordered, totals


class FailedCallRow(NamedTuple):
    """One of an organization's last failed calls, as the dashboard and the management API show it."""

    at: datetime
    status: int
    problem: str  # the problem type's slug ("rate-limited", "not-found", ...; "" when unknown)
    path: str  # with its query string
    request_id: str
    key_id: str  # the API key's public id (never its secret)
    key_name: str  # "" when the key no longer exists
    key_prefix: str  # cs_<env>_<key id> ("" when the key no longer exists)


def usage_failures(*, organization_id: int, limit: int = FAILURES_KEPT) -> list[FailedCallRow] | None:
    """The organization's last failed calls, newest first: refusals by the gate (rate-limited,
    quota-exceeded, not in the plan) and 4xx/5xx answers to its API keys' /v1 calls, with each key's
    name and prefix (1 Redis round trip, 1 query). ``None`` while Redis is unreachable."""
    try:
        calls = metering.failed_calls_recent(organization_id=organization_id, limit=limit)
    except redis_access.ERRORS:
        return None
    keys: dict[str, tuple[str, str]] = {}
    if calls:
        named = ApiKey.objects.filter(organization_id=organization_id, key_id__in={c.key_id for c in calls})
        keys = {row[0]: (row[1], row[2]) for row in named.values_list("key_id", "name", "prefix")}
    return [
        FailedCallRow(
            c.at, c.status, c.problem, c.path, c.request_id, c.key_id, *keys.get(c.key_id, ("", ""))
        )
        for c in calls
    ]


class StripeWebhookState(NamedTuple):
    last_received_at: datetime | None  # the newest webhook event received (None: none yet)
    failed: int  # events that could not be applied (dead-lettered)
    oldest_unapplied_at: datetime | None  # the oldest event received and not applied yet
    unapplied: int = 0  # events received and not applied yet


def stripe_webhook_state() -> StripeWebhookState:
    """What the Stripe webhook has delivered, for operators (``manage.py doctor``, ``GET /metrics``;
    1 query)."""
    row = StripeEvent.objects.aggregate(
        last=Max("received_at"),
        failed=Count("event_id", filter=Q(status=StripeEventStatus.FAILED)),
        oldest_unapplied=Min("received_at", filter=Q(status=StripeEventStatus.RECEIVED)),
        unapplied=Count("event_id", filter=Q(status=StripeEventStatus.RECEIVED)),
    )
    return StripeWebhookState(row["last"], row["failed"], row["oldest_unapplied"], row["unapplied"])


# --- usage across tenants (the admin's operations console) -------------------------------------------
def _day_range(start: date, end: date) -> tuple[datetime, datetime]:
    return datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(
        end + timedelta(days=1), time.min, tzinfo=UTC
    )


#: The gate's refusals as metering counts them (``UsageRecord.refusal``), in the order shown.
REFUSALS = (Refusal.RATE_LIMITED.value, Refusal.QUOTA_EXCEEDED.value, Refusal.PLAN_UPGRADE_REQUIRED.value)


class TenantUsage(NamedTuple):
    organization_id: int
    organization: str  # its name
    requests: int
    credits: int
    by_status: dict[str, int]  # requests per status class
    by_refusal: dict[str, int]  # of the 4xx, the requests the gate refused, per refusal (REFUSALS)


def usage_top_organizations(*, start: date, end: date, limit: int = 10) -> list[TenantUsage]:
    """The organizations with the most metered requests on the days ``start``..``end`` (UTC,
    inclusive), most first, with their requests per status class and per refusal (2 queries)."""
    since, until = _day_range(start, end)
    rows = UsageRecord.objects.filter(hour__gte=since, hour__lt=until, organization__isnull=False)
    top = list(
        rows.values_list("organization_id", "organization__name")
        .annotate(requests=Sum("requests"), credits=Sum("credits"))
        .order_by("-requests", "organization_id")[:limit]
    )
    by_status: dict[int, dict[str, int]] = {org: dict.fromkeys(STATUS_CLASSES, 0) for org, *_ in top}
    by_refusal: dict[int, dict[str, int]] = {org: dict.fromkeys(REFUSALS, 0) for org, *_ in top}
    for org, status, refusal, n in (
        rows.filter(organization_id__in=by_status).values_list("organization_id", "status_class", "refusal")
        .annotate(n=Sum("requests")).order_by()
    ):  # fmt: skip
        by_status[org][status] += n
        if refusal:
            by_refusal[org][refusal] = by_refusal[org].get(refusal, 0) + n
    return [
        TenantUsage(org, name, req, cred, by_status[org], by_refusal[org]) for org, name, req, cred in top
    ]


def usage_refusals(*, start: date, end: date) -> dict[str, int]:
    """Requests the gate refused on the days ``start``..``end`` (UTC, inclusive), every tenant, per
    refusal (REFUSALS; 1 query)."""
    since, until = _day_range(start, end)
    out = dict.fromkeys(REFUSALS, 0)
    for refusal, n in (
        UsageRecord.objects.filter(hour__gte=since, hour__lt=until).exclude(refusal="")
        .values_list("refusal").annotate(n=Sum("requests")).order_by()
    ):  # fmt: skip
        out[refusal] = out.get(refusal, 0) + n
    return out


def usage_daily(
    *, start: date, end: date, organization_ids: list[int] | None = None
) -> dict[int | None, dict[date, dict[str, int]]]:
    """Metered requests per day and status class on the days ``start``..``end`` (UTC, inclusive):
    ``{organization id: {day: {status class: requests}}}`` for ``organization_ids``, or
    ``{None: ...}`` summed over every tenant (unauthenticated requests included) (1 query)."""
    since, until = _day_range(start, end)
    qs = UsageRecord.objects.filter(hour__gte=since, hour__lt=until).annotate(
        day=TruncDay("hour", tzinfo=UTC)
    )
    out: dict[int | None, dict[date, dict[str, int]]] = {}
    if organization_ids is None:
        grouped = qs.values_list("day", "status_class").annotate(n=Sum("requests")).order_by()
        for day, status, n in grouped:
            out.setdefault(None, {}).setdefault(day.date(), dict.fromkeys(STATUS_CLASSES, 0))[status] = n
        return out
    grouped = (
        qs.filter(organization_id__in=organization_ids)
        .values_list("organization_id", "day", "status_class")
        .annotate(n=Sum("requests"))
        .order_by()
    )
    for org, day, status, n in grouped:
        out.setdefault(org, {}).setdefault(day.date(), dict.fromkeys(STATUS_CLASSES, 0))[status] = n
    return out


class PlanMix(NamedTuple):
    plan: str
    display_name: str
    price_cents_monthly: int
    organizations: int  # every organization on the plan
    active: int  # of which with status active (a subscription in force, or no subscription needed)
    monthly_revenue_cents: int  # active x the plan's monthly price (list price: no overage, no trial)


def plan_mix() -> list[PlanMix]:
    """Organizations per plan and the monthly revenue their list prices make, cheapest plan first
    (1 query)."""
    plans = Plan.objects.annotate(
        orgs=Count("organizations"),
        active=Count("organizations", filter=Q(organizations__status=SubscriptionStatus.ACTIVE)),
    ).order_by("price_cents_monthly", "name")
    return [
        PlanMix(
            p.name, p.display_name, p.price_cents_monthly, p.orgs, p.active, p.active * p.price_cents_monthly
        )
        for p in plans
    ]
