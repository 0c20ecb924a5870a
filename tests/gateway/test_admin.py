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


def _assignment_form(org, plan, **overrides) -> dict:
    form = {
        "organization": org.pk,
        "plan": plan.pk,
        "status": "active",
        "stripe_customer_id": "",
        "stripe_subscription_id": "",
        "current_period_end_0": "",
        "current_period_end_1": "",
    }
    form.update(overrides)
    return form


def test_plan_changed_through_the_admin_form_restarts_the_assignment(
    admin_client, tenant, plans, django_capture_on_commit_callbacks
):
    org, key = tenant("free")
    before = OrganizationPlan.objects.get(organization=org).started_at
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/billing/organizationplan/{org.pk}/change/", _assignment_form(org, plans["pro"])
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = OrganizationPlan.objects.get(organization=org)
    assert row.plan == plans["pro"]
    assert row.started_at > before  # "plan changed -> started_at reset" holds from the admin too
    assert key_client(key).get("/v1/limits").json()["plan"]["name"] == "pro"


def test_other_fields_edited_through_the_admin_form_keep_the_start(
    admin_client, tenant, plans, django_capture_on_commit_callbacks
):
    org, _key = tenant("free")
    before = OrganizationPlan.objects.get(organization=org).started_at
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/billing/organizationplan/{org.pk}/change/",
            _assignment_form(org, plans["free"], status="past_due", stripe_customer_id="cus_123"),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = OrganizationPlan.objects.get(organization=org)
    assert (row.plan, row.status, row.stripe_customer_id) == (plans["free"], "past_due", "cus_123")
    assert row.started_at == before


def test_assignment_added_through_the_admin_form_is_created_by_the_service(
    admin_client, tenant, plans, django_capture_on_commit_callbacks
):
    org, key = tenant()  # no assignment row yet
    assert not OrganizationPlan.objects.filter(organization=org).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/billing/organizationplan/add/", _assignment_form(org, plans["pro"])
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OrganizationPlan.objects.get(organization=org).plan == plans["pro"]
    assert key_client(key).get("/v1/limits").json()["plan"]["name"] == "pro"


def test_assignment_deleted_in_the_admin_applies_to_the_next_request(
    tenant, plans, settings, django_capture_on_commit_callbacks
):
    org, key = tenant("pro")
    client = key_client(key)
    assert client.get("/v1/limits").json()["plan"]["name"] == "pro"  # the gateway now holds a copy
    row = OrganizationPlan.objects.get(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        admin.site._registry[OrganizationPlan].delete_model(request=None, obj=row)
    assert not OrganizationPlan.objects.filter(organization=org).exists()
    assert client.get("/v1/limits").json()["plan"]["name"] == settings.BILLING_DEFAULT_PLAN
