"""Tenant isolation of the management API, generic over every route.

A member (owner) of tenant A uses A's credentials on B's objects: every route answers 404, nothing of
B changes, and lists never contain B's rows. A route added to accounts/urls.py without being added
to the tables below fails ``test_every_route_is_in_the_isolation_tables``.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, get_resolver, resolve

from accounts.models import ApiKey, Invitation, Membership
from accounts.services.invitations import invitation_create
from marketdata import services as market
from marketdata.alerts.models import Alert, Delivery, WebhookEndpoint
from marketdata.alerts.services import alert_create

from .conftest import owner_of

# (method, path template, body). Placeholders name B's objects.
OBJECT_ROUTES = [
    ("GET", "/v1/account/members/{member}", None),
    ("PATCH", "/v1/account/members/{member}", {"role": "admin"}),
    ("DELETE", "/v1/account/members/{member}", None),
    ("GET", "/v1/account/invitations/{invitation}", None),
    ("DELETE", "/v1/account/invitations/{invitation}", None),
    ("GET", "/v1/account/keys/{key}", None),
    ("POST", "/v1/account/keys/{key}/revoke", None),
    ("POST", "/v1/account/keys/{key}/rotate", {}),
    # alerts and webhooks (marketdata.alerts, on the same OrganizationScopedView)
    ("GET", "/v1/account/alerts/{alert}", None),
    ("PATCH", "/v1/account/alerts/{alert}", {"active": False}),
    ("DELETE", "/v1/account/alerts/{alert}", None),
    ("GET", "/v1/account/webhook-endpoints/{endpoint}", None),
    ("PATCH", "/v1/account/webhook-endpoints/{endpoint}", {"description": "pwned"}),
    ("DELETE", "/v1/account/webhook-endpoints/{endpoint}", None),
    ("POST", "/v1/account/webhook-endpoints/{endpoint}/rotate-secret", None),
    ("POST", "/v1/account/webhook-endpoints/{endpoint}/test", None),
    ("GET", "/v1/account/deliveries/{delivery}", None),
    ("POST", "/v1/account/deliveries/{delivery}/replay", None),
]
LIST_ROUTES = [
    "/v1/account/organization",
    "/v1/account/members",
    "/v1/account/invitations",
    "/v1/account/keys",
    "/v1/account/audit-events",
    "/v1/account/usage?group_by=key",  # billing's view, on the same OrganizationScopedView
    "/v1/account/usage/failures",  # billing's too (a Redis list per organization)
    "/v1/account/billing",  # billing's Stripe views (answered from our records: no Stripe call here)
    "/v1/account/billing/invoices",
    "/v1/account/alerts",
    "/v1/account/webhook-endpoints",
    "/v1/account/deliveries",
]
CREATE_ROUTES = [
    ("PATCH", "/v1/account/organization", {"name": "pwned"}),
    ("POST", "/v1/account/invitations", {"email": "spy@example.test", "role": "admin"}),
    ("POST", "/v1/account/keys", {"name": "spy key"}),
    ("POST", "/v1/account/billing/checkout", {"plan": "pro"}),
    ("POST", "/v1/account/billing/portal", None),
    ("POST", "/v1/account/organization/leave", None),  # acts on the caller's own membership only
    ("POST", "/v1/account/webhook-endpoints", {"url": "https://hooks.example.com/spy"}),
    (
        "POST",
        "/v1/account/alerts",
        {
            "coin": "bitcoin",
            "condition": {"type": "price", "direction": "above", "level": 1},
            "webhook_url": "https://hooks.example.com/spy",
        },
    ),
]
# Routes that are not organization-scoped (no tenant objects behind them), each tested elsewhere.
UNSCOPED_ROUTES = {
    f"v1/account/{r}"
    for r in (
        "signup",
        "token",
        "token/refresh",
        "verify-email",
        "verify-email/resend",
        "me",
        "invitations/accept",
        "logout",
        "logout/all",
        "password",
        "password/reset",
        "password/reset/confirm",
    )
}


@pytest.fixture(autouse=True)
def _billing_configured(settings):
    """Billing's routes answer 503 without a Stripe key; with one (never reached here: nobody has a
    Stripe customer, and another tenant's routes are refused before any Stripe call) they are scoped
    like the rest."""
    settings.STRIPE_SECRET_KEY = "sk_test_isolation"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # a closed port: a Stripe call would fail loudly


@pytest.fixture
def tenants(make_org, make_member, make_key, jwt_client):
    org_a, org_b = make_org(name="Alpha"), make_org(name="Bravo")
    b_owner = owner_of(org_b)
    b_dev = make_member(org_b, "developer")
    b_member = Membership.objects.get(organization=org_b, user=b_dev)
    b_invitation, _token = invitation_create(
        organization=org_b,
        email="friend-of-b@example.test",
        role="developer",
        actor=b_owner,
        actor_role="owner",
    )
    b_key, _full = make_key(org_b, name="bravo production", created_by=b_owner)
    make_key(org_a, name="alpha key")
    b_alert, b_endpoint, b_delivery = _alerts_of(org_b)
    return {
        "a": org_a,
        "b": org_b,
        "client": jwt_client(owner_of(org_a)),
        "objects": {
            "member": b_member.pk,
            "invitation": b_invitation.pk,
            "key": b_key.key_id,
            "alert": b_alert.pk,
            "endpoint": b_endpoint.pk,
            "delivery": b_delivery.pk,
        },
        "b_secrets": {
            b_dev.email,
            b_owner.email,
            "friend-of-b@example.test",
            b_key.key_id,
            b_key.prefix,
            b_endpoint.url,
            b_endpoint.secret,
            b_delivery.event_id,
        },
    }


def _alerts_of(org):
    """An alert of ``org`` on a webhook endpoint, and a dead delivery of it (replayable)."""
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url="https://bravo-hooks.example.com/secret-path", secret="whsec_bravo_secret"
    )
    coin_id = market.coins_upsert(coins=[market.CoinIn("bitcoin", "btc", "Bitcoin")])["bitcoin"]
    alert = alert_create(
        organization_id=org.pk,
        endpoint=endpoint,
        coin_id=coin_id,
        condition={"type": "price", "direction": "above", "level": 100.0},
        name="bravo alert",
    )
    delivery = Delivery.objects.create(
        organization=org,
        endpoint=endpoint,
        alert=alert,
        event_id="evt_bravo0000000000000000",
        event_type="alert.triggered",
        body="{}",
        status=Delivery.Status.DEAD,
        attempts=1,
    )
    return alert, endpoint, delivery


def _alerts_state(org) -> dict:
    return {
        "alerts": list(Alert.objects.filter(organization=org).values_list("id", "active", "name")),
        "endpoints": list(
            WebhookEndpoint.objects.filter(organization=org).values_list("id", "url", "secret_encrypted")
        ),
        "deliveries": list(Delivery.objects.filter(organization=org).values_list("id", "status", "attempts")),
    }


def _send(client, method, path, body, **headers):
    return getattr(client, method.lower())(path, data=body, format="json", **headers)


@pytest.mark.parametrize(("method", "template", "body"), OBJECT_ROUTES)
def test_other_tenants_objects_are_404(tenants, method, template, body):
    b_before = {
        "members": list(Membership.objects.filter(organization=tenants["b"]).values_list("id", "role")),
        "invitations": list(
            Invitation.objects.filter(organization=tenants["b"]).values_list("id", "revoked_at")
        ),
        "keys": list(
            ApiKey.objects.filter(organization=tenants["b"]).values_list("key_id", "revoked_at", "expires_at")
        ),
        **_alerts_state(tenants["b"]),
    }
    response = _send(tenants["client"], method, template.format(**tenants["objects"]), body)
    assert response.status_code == 404, (method, template, response.content)
    assert response["Content-Type"].startswith("application/problem+json")
    b_after = {
        "members": list(Membership.objects.filter(organization=tenants["b"]).values_list("id", "role")),
        "invitations": list(
            Invitation.objects.filter(organization=tenants["b"]).values_list("id", "revoked_at")
        ),
        "keys": list(
            ApiKey.objects.filter(organization=tenants["b"]).values_list("key_id", "revoked_at", "expires_at")
        ),
        **_alerts_state(tenants["b"]),
    }
    assert b_after == b_before


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_lists_never_contain_other_tenants_rows(tenants, path):
    response = tenants["client"].get(path)
    assert response.status_code == 200, response.content
    text = response.content.decode()
    for secret in tenants["b_secrets"]:
        assert secret not in text, (path, secret)
    assert tenants["b"].slug not in text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", p, None) for p in LIST_ROUTES] + CREATE_ROUTES + [(m, t, b) for m, t, b in OBJECT_ROUTES],
)
def test_selecting_another_tenant_by_header_is_404(tenants, method, path, body):
    path = path.format(**tenants["objects"])
    response = _send(tenants["client"], method, path, body, HTTP_X_ORGANIZATION=tenants["b"].slug)
    assert response.status_code == 404, (method, path, response.content)
    nonexistent = _send(tenants["client"], method, path, body, HTTP_X_ORGANIZATION="no-such-org")
    assert nonexistent.status_code == 404
    assert response.json()["detail"] == nonexistent.json()["detail"]  # existence is not revealed


def _all_routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)
        else:
            yield from _all_routes(pattern.url_patterns, prefix + str(pattern.pattern))


def test_every_route_is_in_the_isolation_tables():
    """Every /v1/account/ route of every app is either in the tables above or explicitly unscoped."""
    routes = {r for r in _all_routes(get_resolver().url_patterns) if r.startswith("v1/account/")}
    sample = {"member": 1, "invitation": 1, "key": "k", "alert": 1, "endpoint": 1, "delivery": 1}
    tables = [t for _m, t, _b in OBJECT_ROUTES] + LIST_ROUTES + [p for _m, p, _b in CREATE_ROUTES]
    covered = {resolve(t.format(**sample).split("?")[0]).route for t in tables}
    assert routes - UNSCOPED_ROUTES == covered, (routes - UNSCOPED_ROUTES) ^ covered


def test_user_in_two_orgs_must_choose_and_fails_closed(make_org, jwt_client):
    org_a = make_org()
    owner = owner_of(org_a)
    org_c = make_org(owner=owner)
    client = jwt_client(owner)
    response = client.get("/v1/account/keys")
    assert response.status_code == 400
    assert response.json()["type"].endswith("/organization-required")
    for org in (org_a, org_c):
        listed = client.get("/v1/account/organization", HTTP_X_ORGANIZATION=org.slug)
        assert listed.json()["organization"]["slug"] == org.slug
