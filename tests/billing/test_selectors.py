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
