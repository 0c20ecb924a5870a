"""Admin saves go through the billing services: a plan edit reaches the gateway at once."""

from __future__ import annotations

import pytest
from django.contrib import admin

from billing.models import OrganizationPlan, Plan
from tests.gateway.conftest import key_client

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


def test_plan_edited_in_the_admin_applies_to_the_next_request(
    tenant, plans, django_capture_on_commit_callbacks
):
    _org, key = tenant("developer")
    client = key_client(key)
    assert client.get("/v1/limits").json()["rate_limits"]["organization"]["limit"] == 300
    plan = Plan.objects.get(name="developer")
    plan.rate_per_minute = 321
    with django_capture_on_commit_callbacks(execute=True):
        admin.site._registry[Plan].save_model(request=None, obj=plan, form=None, change=True)
    assert client.get("/v1/limits").json()["rate_limits"]["organization"]["limit"] == 321


def test_assignment_changed_in_the_admin_applies_to_the_next_request(
    tenant, plans, django_capture_on_commit_callbacks
):
    org, key = tenant("free")
    client = key_client(key)
    assert client.get("/v1/limits").json()["plan"]["name"] == "free"
    row = OrganizationPlan.objects.get(organization=org)
    row.plan = plans["pro"]
    with django_capture_on_commit_callbacks(execute=True):
        admin.site._registry[OrganizationPlan].save_model(request=None, obj=row, form=None, change=True)
    assert client.get("/v1/limits").json()["plan"]["name"] == "pro"


def test_usage_admin_changelist_shows_totals(admin_client, db):
    response = admin_client.get("/admin/billing/usagerecord/")
    assert response.status_code == 200
    assert b"total 0 requests" in response.content
