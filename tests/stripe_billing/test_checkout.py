"""The catalogue (stripe_sync), the customer, Checkout, the Customer Portal and invoices, through the
real stripe library against the local Stripe stand-in."""

from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from accounts.models import AuditEvent, Role, User
from accounts.services.memberships import membership_add
from billing.models import OrganizationPlan, Plan
from billing.services import plan_update


def _sync() -> str:
    out = io.StringIO()
    call_command("stripe_sync", stdout=out)
    return out.getvalue()


def test_stripe_sync_creates_the_catalogue_once_and_a_rerun_changes_nothing(stripe_env, plans):
    first = _sync()
    assert "meter candlestack_api_credits: created" in first
    paid = Plan.objects.filter(price_cents_monthly__gt=0)
    assert {p.name for p in paid} == {"developer", "pro"}
    for plan in paid:
        assert plan.stripe_product_id == f"candlestack_plan_{plan.name}"
        assert plan.stripe_price_id.startswith("price_") and plan.stripe_overage_price_id.startswith("price_")
    prices = {p["id"]: p for p in stripe_env.objects("prices")}
    dev = Plan.objects.get(name="developer")
    flat, metered = prices[dev.stripe_price_id], prices[dev.stripe_overage_price_id]
    assert flat["unit_amount"] == 2900 and flat["recurring"]["interval"] == "month"
    assert metered["recurring"]["usage_type"] == "metered" and metered["unit_amount"] == 40
    assert metered["transform_quantity"] == {"divide_by": 1000, "round": "up"}
    meters = stripe_env.objects("meters")
    assert len(meters) == 1 and meters[0]["default_aggregation"]["formula"] == "sum"
    assert metered["recurring"]["meter"] == meters[0]["id"]

    counts = {kind: len(stripe_env.objects(kind)) for kind in ("products", "prices", "meters")}
    second = _sync()
    assert ": created" not in second and "done: 0 created, 0 changed, 7 unchanged" in second
    assert {kind: len(stripe_env.objects(kind)) for kind in counts} == counts


def test_a_changed_price_is_a_new_price_that_takes_the_lookup_key_and_the_old_one_is_archived(
    stripe_env, plans
):
    _sync()
    dev = Plan.objects.get(name="developer")
    old = dev.stripe_price_id
    plan_update(plan=dev, price_cents_monthly=3900)
    out = _sync()
    dev.refresh_from_db()
    assert dev.stripe_price_id != old and f"replaced {old}" in out
    prices = {p["id"]: p for p in stripe_env.objects("prices")}
    assert prices[old]["active"] is False and prices[old]["lookup_key"] is None
    assert prices[dev.stripe_price_id]["unit_amount"] == 3900
    assert prices[dev.stripe_price_id]["lookup_key"] == "candlestack_developer_monthly"


def test_checkout_returns_a_session_url_and_grants_nothing_by_itself(synced, tenant):
    t = tenant()
    response = t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"].startswith(synced.base) and body["id"].startswith("cs_")
    [session] = synced.objects("checkout_sessions")
    dev = Plan.objects.get(name="developer")
    assert session["mode"] == "subscription" and session["client_reference_id"] == str(t.org.pk)
    assert session["success_url"].startswith("http://127.0.0.1:8000/portal/billing")
    lines = session["line_items"]["data"]
    prices = [(item["price"]["id"], item.get("quantity")) for item in lines]
    assert prices == [(dev.stripe_price_id, 1), (dev.stripe_overage_price_id, None)]
    row = OrganizationPlan.objects.get(organization=t.org)
    assert session["customer"] == row.stripe_customer_id
    [customer] = synced.objects("customers")
    assert customer["metadata"]["organization_id"] == str(t.org.pk)
    # the redirect grants nothing: still free until Stripe's webhook confirms the subscription
    assert row.plan.name == "free" and t.limits()["plan"]["name"] == "free"
    assert AuditEvent.objects.filter(organization=t.org, action="billing.checkout_started").exists()
    # every write carried an idempotency key
    posts = [r for r in synced.requests() if r["method"] == "POST"]
    assert posts and all(r["idempotency_key"] for r in posts)


def test_a_second_checkout_reuses_the_customer(synced, tenant):
    t = tenant()
    for _ in range(2):
        assert t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").status_code == 201
    assert len(synced.objects("customers")) == 1
    assert len(synced.objects("checkout_sessions")) == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_upgrades_create_one_customer(stripe_env, tenant, plans):
    _sync()
    t = tenant()
    results: list[int] = []

    def upgrade():
        try:
            results.append(
                t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json").status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [201] * 4
    assert len(stripe_env.objects("customers")) == 1


@pytest.mark.parametrize(
    ("plan", "why"),
    [("free", "not a plan you can buy"), ("enterprise", "not a plan you can buy"), ("gold", "not a plan")],
)
def test_checkout_of_a_plan_that_is_not_for_sale_is_a_validation_problem(synced, tenant, plan, why):
    response = tenant().jwt().post("/v1/account/billing/checkout", {"plan": plan}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert why in str(response.json()["errors"])
    assert synced.objects("customers") == []


def test_checkout_before_stripe_sync_says_the_plan_is_not_on_sale(stripe_env, tenant):
    response = tenant().jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json")
    assert response.status_code == 400 and "not on sale yet" in str(response.json()["errors"])


@pytest.mark.parametrize("mode", ["error", "slow", "down"])
def test_stripe_down_during_checkout_is_a_503_with_retry_after_and_nothing_half_created(
    synced, tenant, settings, mode
):
    settings.STRIPE_TIMEOUT_SECONDS = 1
    t = tenant()
    synced.faults(mode=mode, path_prefix="/v1/customers", delay=3)
    response = t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json")
    assert response.status_code == 503, response.content
    assert response.json()["type"].endswith("/problems/billing-unavailable")
    assert int(response["Retry-After"]) > 0
    row = OrganizationPlan.objects.filter(organization=t.org).first()
    assert row is None or row.stripe_customer_id == ""
    assert synced.objects("checkout_sessions") == []
    synced.faults(mode="ok")
    if mode != "slow":  # a slow answer may still land at Stripe: the retry finds the same customer
        assert synced.objects("customers") == []
    retry = t.jwt().post("/v1/account/billing/checkout", {"plan": "developer"}, format="json")
    assert retry.status_code == 201
    assert len(synced.objects("customers")) == 1


def test_checkout_session_failure_keeps_the_customer_for_the_next_try(synced, tenant):
    t = tenant()
    synced.faults(mode="error", path_prefix="/v1/checkout")
    assert t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").status_code == 503
    synced.faults(mode="ok")
    assert t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json").status_code == 201
    assert len(synced.objects("customers")) == 1


def test_without_a_secret_key_billing_answers_503_and_the_api_still_works(tenant, plans, settings):
    settings.STRIPE_SECRET_KEY = ""
    t = tenant()
    for method, path in [
        ("get", "/v1/account/billing"),
        ("post", "/v1/account/billing/checkout"),
        ("post", "/v1/account/billing/portal"),
        ("get", "/v1/account/billing/invoices"),
    ]:
        response = getattr(t.jwt(), method)(
            path, {"plan": "pro"} if method == "post" else None, format="json"
        )
        assert response.status_code == 503, path
        assert response.json()["type"].endswith("/problems/billing-not-configured")
    assert t.limits()["plan"]["name"] == "free"
    assert t.jwt().get("/v1/account/usage").status_code == 200


def test_billing_needs_the_billing_manage_permission(synced, tenant):
    t = tenant()
    admin = User.objects.create_user(
        email="admin-billing@example.test", password="correct horse battery staple"
    )
    membership_add(organization=t.org, user=admin, role=Role.ADMIN, actor=None)
    response = t.jwt(admin).post("/v1/account/billing/checkout", {"plan": "pro"}, format="json")
    assert response.status_code == 403
    assert response.json()["required_permission"] == "billing.manage"
    assert t.jwt(admin).post("/v1/account/billing/portal").status_code == 403
    assert t.jwt(admin).get("/v1/account/billing").status_code == 200  # an admin may read billing
    developer = User.objects.create_user(
        email="dev-billing@example.test", password="correct horse battery staple"
    )
    membership_add(organization=t.org, user=developer, role=Role.DEVELOPER, actor=None)
    response = t.jwt(developer).get("/v1/account/billing")
    assert response.status_code == 403 and response.json()["required_permission"] == "billing.read"


def test_portal_needs_a_customer_then_returns_a_session(synced, tenant):
    t = tenant()
    response = t.jwt().post("/v1/account/billing/portal")
    assert response.status_code == 409 and response.json()["type"].endswith("/problems/no-billing-account")
    t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json")
    response = t.jwt().post("/v1/account/billing/portal")
    assert response.status_code == 201 and response.json()["url"].startswith(synced.base)
    [session] = synced.objects("portal_sessions")
    assert session["customer"] == OrganizationPlan.objects.get(organization=t.org).stripe_customer_id


def test_invoices_lists_the_customers_invoices_with_paging(synced, tenant):
    t = tenant()
    assert t.jwt().get("/v1/account/billing/invoices").json() == {"invoices": [], "has_more": False}
    t.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json")
    customer = OrganizationPlan.objects.get(organization=t.org).stripe_customer_id
    other = tenant()
    other.jwt().post("/v1/account/billing/checkout", {"plan": "pro"}, format="json")
    other_customer = OrganizationPlan.objects.get(organization=other.org).stripe_customer_id
    for amount in (9900, 9950, 10100):
        synced.create_invoice(customer=customer, status="paid", amount_due=amount, amount_paid=amount)
    synced.create_invoice(customer=other_customer, status="open", amount_due=1, amount_paid=0)
    page = t.jwt().get("/v1/account/billing/invoices?limit=2").json()
    assert [i["amount_due"] for i in page["invoices"]] == [10100, 9950] and page["has_more"] is True
    assert page["invoices"][0]["hosted_invoice_url"] and page["invoices"][0]["invoice_pdf"]
    rest = (
        t.jwt()
        .get(f"/v1/account/billing/invoices?limit=2&starting_after={page['invoices'][-1]['id']}")
        .json()
    )
    assert [i["amount_due"] for i in rest["invoices"]] == [9900] and rest["has_more"] is False
    bad = t.jwt().get("/v1/account/billing/invoices?starting_after=../x")
    assert bad.status_code == 400
