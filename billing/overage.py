"""Overage reported to Stripe's Billing Meter, exactly once per (organization, hour).

What is billed: on a plan with overage on, every credit past the plan's monthly credits (UTC calendar
month, the gate's quota period) in the organization's exact usage in PostgreSQL (never Redis). The
overage of an hour is how much the month's running total past the included credits grew in that
hour, so the hours of a month add up to the month's overage, in whole credits.

How it reaches Stripe (:func:`report_cycle`, periodic task ``billing.report_overage`` and
``manage.py stripe_report_usage``): for each hour within Stripe's 35-day window, the current one
included, the overage Stripe should hold is compared with what we sent
(:class:`billing.models.OverageReport`, one row per meter event). A difference becomes a new meter
event with the deterministic identifier ``cs-<organization>-<YYYYMMDDHH>-r<revision>``:

* more usage (the current hour went on, or a late flush): a new revision carrying the difference;
* less usage (a correction refunded credits): the newest revisions are cancelled (meter event
  adjustments, possible for 24 h) and the remainder re-sent as a new revision;
* the row is written ``pending`` before the call and ``sent`` after, so a reporter killed in between
  re-sends the *same* identifier on its next run, which Stripe refuses as a duplicate (we then know
  it arrived) — retried, duplicated or killed-and-rerun reporters never count twice.

What cannot be corrected any more (older than Stripe accepts, or an event too old to cancel) is
recorded as :class:`billing.models.OverageDrift` for an operator and logged. Two reporters never run
at once (a PostgreSQL advisory lock). :func:`reconcile` compares our overage with Stripe's meter
event summaries (``manage.py stripe_reconcile``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from billing.models import OrganizationPlan, OverageDrift, OverageReport, OverageReportState, UsageRecord
from billing.stripe_api import StripeRejected, client, errors

logger = logging.getLogger(__name__)

STRIPE_WINDOW = timedelta(days=35)  # meter events older than this are refused by Stripe
SAFETY = timedelta(hours=1)  # stay clear of the window's edge (clocks, a slow cycle)
CANCEL_WINDOW = timedelta(hours=23)  # Stripe cancels meter events up to 24 h after receiving them
HOUR = timedelta(hours=1)
_LOCK_KEY = 0x43534F56  # pg advisory lock id of the reporter ("CSOV")
R = OverageReportState


def identifier(organization_id: int, hour: datetime, revision: int) -> str:
    return f"cs-{organization_id}-{hour.astimezone(UTC):%Y%m%d%H}-r{revision}"


def _month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(moment: datetime) -> datetime:
    return (_month_start(moment) + timedelta(days=32)).replace(day=1)


def hourly_overage(
    *, organization_id: int, included: int, start: datetime, until: datetime
) -> dict[datetime, int]:
    """Overage credits per hour in [``start``, ``until``) (``start`` is a month start; the running
    total restarts at each month). Hours without overage are left out."""
    rows = (
        UsageRecord.objects.filter(organization_id=organization_id, hour__gte=start, hour__lt=until)
        .values("hour")
        .annotate(credits=Sum("credits"))
        .order_by("hour")
    )
    out: dict[datetime, int] = {}
    month, total = None, 0
    for row in rows:
        hour = row["hour"].astimezone(UTC)
        if _month_start(hour) != month:
            month, total = _month_start(hour), 0
        before = max(0, total - included)
        total += int(row["credits"] or 0)
        grown = max(0, total - included) - before
        if grown > 0:
            out[hour] = grown
    return out


def billable_assignments():
    """Organizations whose overage is reported: a Stripe customer and a plan with overage on."""
    return (
        OrganizationPlan.objects.select_related("plan")
        .filter(plan__overage=True)
        .exclude(stripe_customer_id="")
    )


@dataclass
class CycleResult:
    skipped: bool = False  # another reporter holds the lock
    sent: int = 0  # meter events sent
    credits: int = 0  # overage credits in them
    canceled: int = 0
    resent: int = 0  # pending events of an interrupted run, sent again
    drift: int = 0  # (organization, hour) left for an operator
    errors: list[str] = field(default_factory=list)


def _send(report: OverageReport, result: CycleResult) -> None:
    """Send one ``pending`` meter event; ``sent`` once Stripe has it (now or from an earlier try)."""
    try:
        with errors("send meter event"):
            client().v1.billing.meter_events.create(
                params={
                    "event_name": settings.STRIPE_METER_EVENT_NAME,
                    "payload": {"stripe_customer_id": report.stripe_customer_id, "value": str(report.value)},
                    "identifier": report.identifier,
                    "timestamp": int(report.hour.timestamp()),
                },
                options={"idempotency_key": report.identifier},
            )
    except StripeRejected as exc:
        if _already_delivered(exc):
            logger.info("meter event %s was already delivered", report.identifier)
        else:  # refused: Stripe stored nothing; the next cycle sees the difference again
            report.delete()
            _drift(report.organization_id, report.hour, reason=f"Stripe refused the meter event: {exc}")
            result.drift += 1
            result.errors.append(f"{report.identifier}: {exc}")
            return
    report.state, report.sent_at = R.SENT, timezone.now()
    report.save(update_fields=["state", "sent_at"])
    result.sent += 1
    result.credits += report.value


def _already_delivered(exc: StripeRejected) -> bool:
    """Stripe refused an identifier it already holds (our earlier try reached it). The wording of that
    refusal is not documented, so any refusal that says "duplicate"/"already" counts: a re-send must
    never be counted twice (the other refusals — a stale timestamp, an unknown customer — do not)."""
    text = str(exc).lower()
    return (
        exc.code == "resource_already_exists"
        or any(word in text for word in ("already exists", "already been", "already received", "duplicate"))
        or ("identifier" in text and "exist" in text)
    )


def _cancel(report: OverageReport, result: CycleResult) -> bool:
    """Cancel one ``canceling`` meter event at Stripe; False (back to ``sent``) if Stripe refuses."""
    try:
        with errors("cancel meter event"):
            client().v1.billing.meter_event_adjustments.create(
                params={
                    "event_name": settings.STRIPE_METER_EVENT_NAME,
                    "type": "cancel",
                    "cancel": {"identifier": report.identifier},
                },
                options={"idempotency_key": f"cancel-{report.identifier}"},
            )
    except StripeRejected as exc:
        report.state = R.SENT
        report.save(update_fields=["state"])
        result.errors.append(f"cancel {report.identifier}: {exc}")
        return False
    report.state, report.canceled_at = R.CANCELED, timezone.now()
    report.save(update_fields=["state", "canceled_at"])
    result.canceled += 1
    return True


def _drift(
    organization_id: int, hour: datetime, *, reason: str, reported: int = 0, expected: int = 0
) -> None:
    logger.warning(
        "overage drift for organization %s at %s: reported %s, expected %s (%s)",
        organization_id, hour.isoformat(), reported, expected, reason,
    )  # fmt: skip
    OverageDrift.objects.update_or_create(
        organization_id=organization_id,
        hour=hour,
        defaults={
            "reported": reported,
            "expected": expected,
            "reason": reason[:255],
            "detected_at": timezone.now(),
            "resolved": False,
        },
    )


def _new_revision(*, organization_id: int, customer: str, hour: datetime, value: int) -> OverageReport:
    last = (
        OverageReport.objects.filter(organization_id=organization_id, hour=hour)
        .order_by("-revision")
        .values_list("revision", flat=True)
        .first()
    )
    revision = 0 if last is None else last + 1
    return OverageReport.objects.create(
        organization_id=organization_id,
        hour=hour,
        revision=revision,
        identifier=identifier(organization_id, hour, revision),
        stripe_customer_id=customer,
        value=value,
        state=R.PENDING,
    )


def _settle_hour(
    *, assignment: OrganizationPlan, hour: datetime, target: int, held: list[OverageReport], now, result
) -> None:
    """Make Stripe hold ``target`` overage credits for (organization, hour) given the events
    ``held`` (sent/pending) there."""
    org = assignment.organization_id
    reported = sum(r.value for r in held)
    if target > reported:
        report = _new_revision(
            organization_id=org, customer=assignment.stripe_customer_id, hour=hour, value=target - reported
        )
        _send(report, result)
        return
    # less than reported: cancel the newest cancellable events until at or under the target
    for report in sorted(held, key=lambda r: -r.revision):
        if reported <= target:
            break
        if report.state != R.SENT or report.sent_at is None or now - report.sent_at > CANCEL_WINDOW:
            continue
        report.state = R.CANCELING
        report.save(update_fields=["state"])
        if _cancel(report, result):
            reported -= report.value
    if reported > target:
        _drift(
            org, hour, reported=reported, expected=target,
            reason="usage fell after reporting and the reported events are too old to cancel",
        )  # fmt: skip
        result.drift += 1
    elif target > reported:
        report = _new_revision(
            organization_id=org, customer=assignment.stripe_customer_id, hour=hour, value=target - reported
        )
        _send(report, result)


def report_until(now: datetime) -> datetime:
    """Hours before this are reported: every hour up to the current one (its usage so far; what it
    adds later goes as further revisions)."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + HOUR


def report_cycle(
    *, now: datetime | None = None, say: Callable[[str], None] = lambda line: None
) -> CycleResult:
    """One reporting cycle (see the module docstring). Safe to run at any time, any number of times."""
    now = now or timezone.now()
    client()  # BillingNotConfigured before anything else
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
        if not cursor.fetchone()[0]:
            say("another reporter is running; nothing done")
            return CycleResult(skipped=True)
    try:
        return _cycle(now, say)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])


def _cycle(now: datetime, say: Callable[[str], None]) -> CycleResult:
    result = CycleResult()
    # 1. an interrupted run's events: finish them with the same identifiers
    for report in OverageReport.objects.filter(state=R.CANCELING).order_by("id"):
        _cancel(report, result)
    for report in OverageReport.objects.filter(state=R.PENDING).order_by("id"):
        before = result.sent
        _send(report, result)
        result.resent += result.sent - before
    # 2. every billable organization, every hour of the months that overlap Stripe's window
    until = report_until(now)
    window_start = (now - STRIPE_WINDOW + SAFETY).astimezone(UTC).replace(
        minute=0, second=0, microsecond=0
    ) + HOUR
    start = _month_start(window_start)
    for assignment in billable_assignments():
        org = assignment.organization_id
        targets = hourly_overage(
            organization_id=org, included=assignment.plan.monthly_credits, start=start, until=until
        )
        held: dict[datetime, list[OverageReport]] = defaultdict(list)
        for report in OverageReport.objects.filter(
            organization_id=org, hour__gte=start, hour__lt=until, state__in=[R.SENT, R.PENDING]
        ):
            held[report.hour.astimezone(UTC)].append(report)
        for hour in sorted(set(targets) | set(held)):
            target, reports = targets.get(hour, 0), held.get(hour, [])
            reported = sum(r.value for r in reports)
            if target == reported:
                continue
            if hour < window_start:
                _drift(
                    org,
                    hour,
                    reported=reported,
                    expected=target,
                    reason="older than Stripe accepts (35 days)",
                )
                result.drift += 1
                continue
            _settle_hour(
                assignment=assignment, hour=hour, target=target, held=reports, now=now, result=result
            )
    say(
        f"sent {result.sent} meter events ({result.credits} credits, {result.resent} resent), "
        f"canceled {result.canceled}, drift {result.drift}"
    )
    return result


@dataclass
class Difference:
    organization_id: int
    customer: str
    hour: datetime | None  # None: the whole period
    ours: int
    stripe: int


def meter_id() -> str:
    event_name = settings.STRIPE_METER_EVENT_NAME
    with errors("list meters"):
        meters = client().v1.billing.meters.list(params={"status": "active", "limit": 100})
    for meter in meters.auto_paging_iter():
        if meter.event_name == event_name:
            return meter.id
    raise StripeRejected(f"no active meter for {event_name!r}: run manage.py stripe_sync", code="no_meter")


def reconcile(*, period: str | None = None, now: datetime | None = None) -> list[Difference]:
    """Our overage per organization and hour in ``period`` (YYYY-MM, default: this month) against
    Stripe's meter event summaries (hourly), up to the current hour."""
    now = now or timezone.now()
    month = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC) if period else _month_start(now)
    end = min(_next_month(month), report_until(now))
    if end <= month:
        return []
    mid = meter_id()
    differences: list[Difference] = []
    for assignment in billable_assignments():
        org, customer = assignment.organization_id, assignment.stripe_customer_id
        ours = hourly_overage(
            organization_id=org, included=assignment.plan.monthly_credits, start=month, until=end
        )
        theirs: dict[datetime, int] = defaultdict(int)
        with errors("list meter event summaries"):
            summaries = client().v1.billing.meters.event_summaries.list(
                mid,
                params={
                    "customer": customer,
                    "start_time": int(month.timestamp()),
                    "end_time": int(end.timestamp()),
                    "value_grouping_window": "hour",
                    "limit": 100,
                },
            )
        for summary in summaries.auto_paging_iter():
            theirs[datetime.fromtimestamp(summary.start_time, tz=UTC)] += round(summary.aggregated_value)
        for hour in sorted(set(ours) | set(theirs)):
            if ours.get(hour, 0) != theirs.get(hour, 0):
                differences.append(Difference(org, customer, hour, ours.get(hour, 0), theirs.get(hour, 0)))
    return differences
