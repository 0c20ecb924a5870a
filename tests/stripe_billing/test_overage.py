"""Overage: paid plans keep answering past their credits, and the exact usage past them reaches the
Stripe meter once per (organization, hour) — through late flushes, corrections, duplicated or
killed reporters — and reconciles."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import F

from billing import overage
from billing.models import OrganizationPlan, OverageDrift, OverageReport, Plan, UsageRecord
from billing.services import organization_plan_set, plan_update
from tests.conftest import REPO_ROOT, test_database_url
from tests.stripe_billing.processes import stripe_process_env

INCLUDED = 1000


@pytest.fixture
def billed(synced, tenant, django_capture_on_commit_callbacks):
    """An organization with a Stripe customer on the developer plan (overage on), whose included
    credits are lowered to 1,000 for the test."""
    t = tenant()
    assert (
        t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json").status_code == 201
    )
    with django_capture_on_commit_callbacks(execute=True):
        plan_update(plan=Plan.objects.get(name="developer"), monthly_credits=INCLUDED)
        organization_plan_set(organization=t.org, plan_name="developer")
    t.customer = OrganizationPlan.objects.get(organization=t.org).stripe_customer_id  # type: ignore[attr-defined]
    return t


def _hours(now: datetime, n: int) -> list[datetime]:
    """``n`` consecutive hours before ``now``, all in one calendar month."""
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    first = last - timedelta(hours=n - 1)
    if first.month != last.month:  # early on the 1st: take hours of the day before instead
        last = last.replace(day=1, hour=0) - timedelta(hours=12)
        first = last - timedelta(hours=n - 1)
    return [first + timedelta(hours=i) for i in range(n)]


def _use(org, hour: datetime, credits_: int, endpoint: str = "markets") -> None:
    row, _ = UsageRecord.objects.get_or_create(
        hour=hour, organization=org, key_id="k", endpoint=endpoint, status_class="2xx"
    )
    UsageRecord.objects.filter(pk=row.pk).update(requests=F("requests") + 1, credits=F("credits") + credits_)


def _stripe_by_hour(standin, customer: str) -> dict[datetime, int]:
    held: dict[datetime, int] = defaultdict(int)
    for e in standin.meter_events():
        if e["customer"] == customer and not e["canceled"]:
            held[datetime.fromtimestamp(e["timestamp"], tz=UTC)] += e["value"]
    return {h: v for h, v in held.items() if v}


def test_a_paid_plan_answers_past_its_credits_and_free_stops(
    synced, tenant, django_capture_on_commit_callbacks
):
    paid, free = tenant(), tenant()
    with django_capture_on_commit_callbacks(execute=True):
        plan_update(plan=Plan.objects.get(name="developer"), monthly_credits=3)
        plan_update(plan=Plan.objects.get(name="free"), monthly_credits=3)
        organization_plan_set(organization=paid.org, plan_name="developer")
    statuses = {name: [t.api().get("/v1/coins?limit=1").status_code for _ in range(5)] for name, t in
                (("paid", paid), ("free", free))}  # fmt: skip
    assert statuses["free"][:3] == [200] * 3 and statuses["free"][3:] == [429, 429]
    assert statuses["paid"] == [200] * 5
    limits = paid.limits()
    assert (
        limits["quota"]["overage"] is True
        and limits["quota"]["used"] == 5
        and limits["quota"]["remaining"] == 0
    )
    assert free.limits()["quota"]["overage"] is False


def test_each_hour_is_reported_once_and_late_flushes_and_corrections_are_settled(billed, synced, settings):
    now = datetime.now(UTC)
    h1, h2, h3 = _hours(now, 3)
    _use(billed.org, h1, 800)
    _use(billed.org, h2, 500)  # running total 1,300: 300 over
    _use(billed.org, h3, 400)  # 1,700: 400 over
    first = overage.report_cycle(now=now)
    assert (first.sent, first.credits) == (2, 700)
    assert _stripe_by_hour(synced, billed.customer) == {h2: 300, h3: 400}
    assert overage.report_cycle(now=now).sent == 0  # a rerun, or a duplicated reporter: nothing new
    assert len(synced.meter_events()) == 2

    _use(billed.org, h2, 50)  # a late flush into an hour already reported
    late = overage.report_cycle(now=now)
    assert (late.sent, late.credits) == (1, 50)
    assert _stripe_by_hour(synced, billed.customer) == {h2: 350, h3: 400}

    _use(billed.org, h2, -150)  # a correction refunds credits: h2 now brings 200 over
    fixed = overage.report_cycle(now=now)
    assert fixed.canceled == 2 and fixed.sent == 1
    assert _stripe_by_hour(synced, billed.customer) == {h2: 200, h3: 400}
    identifiers = [r.identifier for r in OverageReport.objects.filter(hour=h2).order_by("revision")]
    assert identifiers == [overage.identifier(billed.org.pk, h2, rev) for rev in (0, 1, 2)]

    out = io.StringIO()
    call_command("stripe_reconcile", stdout=out)
    assert "no differences" in out.getvalue()
    overview = billed.jwt().get("/v1/account/billing").json()
    if h2.month == now.month:
        assert overview["overage"]["credits"] == 600
        assert overview["overage"]["amount_cents"] == 40  # one started 1,000 at 40 cents
        assert overview["next_invoice"] is None  # no subscription confirmed yet


def test_reconcile_reports_a_difference_and_exits_1(billed, synced):
    now = datetime.now(UTC)
    (h1,) = _hours(now, 1)
    _use(billed.org, h1, 1500)
    overage.report_cycle(now=now)
    synced.stripe_client().v1.billing.meter_events.create(
        params={
            "event_name": "candlestack_api_credits",
            "payload": {"stripe_customer_id": billed.customer, "value": "7"},
            "timestamp": int(h1.timestamp()),
        }
    )
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("stripe_reconcile", "--period", h1.strftime("%Y-%m"), stdout=out)
    assert exit_.value.code == 1
    assert "ours 500, stripe 507 (difference -7)" in out.getvalue()


def test_hours_older_than_stripe_accepts_are_flagged_not_sent(billed, synced):
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    synced.clock(int(now.timestamp()))
    old = datetime(2026, 10, 3, 10, tzinfo=UTC)  # in the month of the window's start, before it
    recent = datetime(2026, 11, 19, 10, tzinfo=UTC)
    _use(billed.org, old, 1200)
    _use(billed.org, recent, 1100)
    result = overage.report_cycle(now=now)
    assert result.drift == 1
    drift = OverageDrift.objects.get(organization=billed.org)
    assert (drift.hour, drift.expected, drift.reported) == (old, 200, 0)
    assert _stripe_by_hour(synced, billed.customer) == {recent: 100}


def test_a_refused_meter_event_is_not_kept_as_sent(billed, synced):
    now = datetime.now(UTC)
    (h1,) = _hours(now, 1)
    _use(billed.org, h1, 1100)
    synced.stripe_client().v1.customers.delete(billed.customer)  # Stripe refuses events for it now
    result = overage.report_cycle(now=now)
    assert result.sent == 0 and result.drift == 1 and result.errors
    assert not OverageReport.objects.filter(organization=billed.org).exists()


def test_without_a_secret_key_the_reporter_command_fails_clearly(settings, db):
    settings.STRIPE_SECRET_KEY = ""
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        call_command("stripe_report_usage")


@pytest.mark.django_db(transaction=True)
def test_a_reporter_killed_mid_run_and_rerun_leaves_each_hour_exactly_once(
    stripe_env, plans, tenant, tmp_path
):
    call_command("stripe_sync", stdout=io.StringIO())
    t = tenant()
    assert (
        t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json").status_code == 201
    )
    plan_update(plan=Plan.objects.get(name="developer"), monthly_credits=INCLUDED)
    organization_plan_set(organization=t.org, plan_name="developer")
    customer = OrganizationPlan.objects.get(organization=t.org).stripe_customer_id
    now = datetime.now(UTC)
    hours = _hours(now, 4)
    for hour, used in zip(hours, (1100, 200, 300, 400), strict=True):
        _use(t.org, hour, used)
    expected = dict(zip(hours, (100, 200, 300, 400), strict=True))

    # the reporter's first meter event hangs at Stripe (which stores it after the delay): kill it then
    stripe_env.faults(mode="slow", path_prefix="/v1/billing/meter_events", delay=4, count=1)
    log = (tmp_path / "reporter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "stripe_report_usage"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": test_database_url(),
            **stripe_process_env(stripe_env),
            "STRIPE_TIMEOUT_SECONDS": "30",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not OverageReport.objects.filter(state="pending").exists():  # its first event is on its way
        assert proc.poll() is None, (tmp_path / "reporter.log").read_text()
        assert time.monotonic() < deadline, "the reporter never reached Stripe"
        time.sleep(0.05)
    time.sleep(0.5)  # the request is at Stripe, waiting for its answer
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    log.close()
    assert OverageReport.objects.filter(state="pending").count() == 1  # written before the call
    time.sleep(4.5)  # Stripe finishes storing the event the killed reporter sent
    assert len(stripe_env.meter_events()) == 1

    result = overage.report_cycle(now=now)
    assert result.resent == 1  # the same identifier again: Stripe already had it
    assert _stripe_by_hour(stripe_env, customer) == expected
    assert len(stripe_env.meter_events()) == 4
    assert overage.report_cycle(now=now).sent == 0
    out = io.StringIO()
    call_command("stripe_reconcile", stdout=out)
    assert "no differences" in out.getvalue()


def test_the_current_hour_is_reported_as_it_goes(billed, synced):
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    _use(billed.org, hour, 1200)
    assert overage.report_cycle(now=now).credits == 200
    _use(billed.org, hour, 300)  # the hour goes on
    assert overage.report_cycle(now=now).credits == 300
    assert _stripe_by_hour(synced, billed.customer) == {hour: 500}
    assert list(OverageReport.objects.filter(hour=hour).values_list("revision", "value")) == [
        (0, 200),
        (1, 300),
    ]


@pytest.mark.parametrize(
    ("code", "message", "delivered"),
    [
        ("resource_already_exists", "An event with this identifier already exists.", True),
        ("", "A meter event with identifier cs-1-2026112910-r0 was already received.", True),
        ("", "Duplicate meter event.", True),
        ("", "Timestamp must be within the past 35 calendar days.", False),
        ("resource_missing", "No such customer: 'cus_x'", False),
    ],
)
def test_only_a_refusal_that_says_duplicate_counts_as_delivered(code, message, delivered):
    from billing.stripe_api import StripeRejected

    assert overage._already_delivered(StripeRejected(message, code=code, status=400)) is delivered
