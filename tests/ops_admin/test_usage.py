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
    org: Organization | None, day_offset: int, status_class: str, requests: int, charged: int = 0
) -> None:
    hour = datetime.combine(timezone.now().date() - timedelta(days=day_offset), time(3), tzinfo=UTC)
    UsageRecord.objects.create(
        hour=hour, organization=org, key_id="k" if org else "", endpoint="prices", status_class=status_class,
        requests=requests, credits=charged,
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
