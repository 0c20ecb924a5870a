"""The admin's operations console, usage page: calls per day and tenant, 4xx share, plan mix."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organization
from billing.models import OrganizationPlan, Plan, SubscriptionStatus, UsageRecord
from tests.ops_admin.conftest import external_assets

pytestmark = pytest.mark.django_db


def _usage(
    org: Organization | None,
    day_offset: int,
    status_class: str,
    requests: int,
    charged: int = 0,
    refusal: str = "",
) -> None:
    hour = datetime.combine(timezone.now().date() - timedelta(days=day_offset), time(3), tzinfo=UTC)
    UsageRecord.objects.create(
        hour=hour, organization=org, key_id="k" if org else "", endpoint="prices", status_class=status_class,
        requests=requests, credits=charged, refusal=refusal,
    )  # fmt: skip


def test_usage_page_shows_tenants_shares_and_plan_mix(admin_client):
    alpha = Organization.objects.create(name="Alpha Corp", slug="alpha")
    beta = Organization.objects.create(name="Beta Ltd", slug="beta")
    _usage(alpha, 0, "2xx", 100, charged=100)
    _usage(alpha, 0, "4xx", 20)
    _usage(alpha, 1, "2xx", 50, charged=50)
    _usage(beta, 0, "2xx", 10, charged=10)
    _usage(beta, 40, "2xx", 999)  # outside the 30 days
    _usage(None, 0, "4xx", 5)  # unauthenticated: in the totals, no tenant
    paid = Plan.objects.filter(price_cents_monthly__gt=0).order_by("price_cents_monthly").first()
    assert paid is not None
    OrganizationPlan.objects.create(organization=alpha, plan=paid, status=SubscriptionStatus.ACTIVE)
    OrganizationPlan.objects.create(organization=beta, plan=paid, status=SubscriptionStatus.PAST_DUE)

    response = admin_client.get(reverse("ops:usage"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="usage-requests">185<' in html
    assert 'id="usage-4xx">13.5 %<' in html  # 25 of 185
    tenants = [t["usage"] for t in response.context["tenants"]]
    assert [(t.organization, t.requests, t.credits) for t in tenants] == [
        ("Alpha Corp", 170, 150),
        ("Beta Ltd", 10, 10),
    ]
    assert tenants[0].by_status == {"2xx": 150, "3xx": 0, "4xx": 20, "5xx": 0}
    assert "11.8 %" in html  # Alpha's 4xx share: 20 of 170
    assert html.count('<svg class="ops-chart"') == 3  # every tenant, and one for all
    assert "Requests per day of Alpha Corp" in html
    row = next(p for p in response.context["plans"] if p.plan == paid.name)
    assert (row.organizations, row.active, row.monthly_revenue_cents) == (2, 1, paid.price_cents_monthly)
    assert response.context["revenue_cents"] == paid.price_cents_monthly
    assert f"{paid.price_cents_monthly / 100:,.2f}" in html
    assert not external_assets(html), external_assets(html)


def test_usage_page_is_staff_only(client):
    response = client.get(reverse("ops:usage"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_usage_page_shows_exact_rate_limited_and_quota_exceeded_shares(admin_client):
    gamma = Organization.objects.create(name="Gamma GmbH", slug="gamma")
    _usage(gamma, 0, "2xx", 60, charged=60)
    _usage(gamma, 0, "4xx", 10)  # other client errors (404, 400 ...)
    _usage(gamma, 0, "4xx", 20, refusal="rate-limited")
    _usage(gamma, 1, "4xx", 10, refusal="quota-exceeded")
    response = admin_client.get(reverse("ops:usage"))
    assert response.status_code == 200
    html = response.content.decode()
    [tenant] = response.context["tenants"]
    assert tenant["usage"].by_status["4xx"] == 40
    assert tenant["usage"].by_refusal == {
        "rate-limited": 20,
        "quota-exceeded": 10,
        "plan-upgrade-required": 0,
    }
    assert 'id="usage-rate-limited">20.0 %<' in html  # 20 of 100
    assert 'id="usage-quota-exceeded">10.0 %<' in html
    assert '<td class="ops-share">40.0 %</td>' in html
    assert '<td class="ops-rate-limited">20.0 %</td>' in html
    assert 'id="refused-quota-exceeded">10<' in html


def test_gateway_refusals_reach_the_usage_page_with_their_reason(admin_client, settings):
    """End to end: real refusals by the gate, flushed from Redis, shown as exact shares."""
    from rest_framework.test import APIClient

    from accounts.services.api_keys import api_key_create
    from billing import metering, services

    plan, _ = Plan.objects.update_or_create(
        name="ops-tight",
        defaults={"display_name": "Tight", "rate_per_minute": 1, "burst": 2, "key_rate_per_minute": 1,
                  "monthly_credits": 1000, "endpoints": ["*"], "timeframes": ["*"]},
    )  # fmt: skip
    org = Organization.objects.create(name="Delta", slug="delta")
    services.organization_plan_set(organization=org, plan_name=plan.name)
    _row, key = api_key_create(organization=org, name="k", audit=False)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    codes = [client.get("/v1/ping").status_code for _ in range(5)]
    assert codes.count(429) == 3
    metering.usage_flush()
    response = admin_client.get(reverse("ops:usage"))
    [tenant] = [t for t in response.context["tenants"] if t["usage"].organization == "Delta"]
    assert tenant["usage"].by_refusal["rate-limited"] == 3
    assert tenant["share_rate_limited"] == 60.0
