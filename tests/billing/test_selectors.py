"""Billing's reads never write: the gateway's Redis-down path reads limits through them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import selectors
from billing.models import Plan
from billing.plans import DEFAULT_PLANS

pytestmark = pytest.mark.django_db


def test_limits_without_the_default_plan_row_come_from_its_definition_without_writing(settings):
    settings.BILLING_DEFAULT_PLAN = "developer"
    Plan.objects.filter(name="developer").delete()
    with CaptureQueriesContext(connection) as queries:
        limits = selectors.organization_plan_limits(organization_id=987_654)  # no assignment row
    assert (limits.name, limits.rate_per_minute, limits.monthly_credits) == (
        "developer",
        DEFAULT_PLANS["developer"]["rate_per_minute"],
        DEFAULT_PLANS["developer"]["monthly_credits"],
    )
    assert limits.timeframes == "*"
    assert not Plan.objects.filter(name="developer").exists()
    assert [q["sql"].split()[0].upper() for q in queries.captured_queries] == ["SELECT", "SELECT"]


def test_limits_without_an_assignment_are_the_default_plans(settings):
    free = Plan.objects.get(name=settings.BILLING_DEFAULT_PLAN)
    limits = selectors.organization_plan_limits(organization_id=987_654)
    assert (limits.name, limits.burst) == (free.name, free.burst)


def test_usage_breakdown_is_the_three_usage_reports_in_one_query():
    from datetime import UTC, date, datetime

    from accounts.services.organizations import organization_create
    from billing.models import UsageRecord

    org = organization_create(name="Breakdown Org")
    rows = [
        ("2026-03-01T05", "k1", "prices", "2xx", 5, 5),
        ("2026-03-01T23", "k2", "prices", "4xx", 2, 0),
        ("2026-03-02T00", "k1", "candles", "2xx", 3, 6),
        ("2026-03-04T12", "k2", "candles", "5xx", 1, 0),
        ("2026-03-05T00", "k1", "prices", "2xx", 9, 9),  # outside the range
    ]
    for hour, key_id, endpoint, status_class, requests, cost in rows:
        UsageRecord.objects.create(
            organization_id=org.pk,
            hour=datetime.strptime(hour, "%Y-%m-%dT%H").replace(tzinfo=UTC),
            key_id=key_id,
            endpoint=endpoint,
            status_class=status_class,
            requests=requests,
            credits=cost,
        )
    start, end = date(2026, 3, 1), date(2026, 3, 4)
    with CaptureQueriesContext(connection) as queries:
        breakdown = selectors.usage_breakdown(organization_id=org.pk, start=start, end=end)
    assert len(queries.captured_queries) == 1
    for group_by in ("day", "endpoint", "key"):
        expected = selectors.usage_report(organization_id=org.pk, start=start, end=end, group_by=group_by)
        assert breakdown[group_by] == expected
    assert breakdown["day"][1] == {"requests": 11, "credits": 11}
