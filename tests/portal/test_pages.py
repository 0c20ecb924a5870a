"""The portal's pages through Django's test client: what each page shows, what each form does (through
the same services as the management API), the role rules (not offered, and 403 when posted anyway),
CSRF, the login limits and the security headers."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import ApiKey, AuditEvent, Invitation, Membership, User
from accounts.services.api_keys import api_key_create
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def owner_of(org) -> User:
    return Membership.objects.get(organization=org, role="owner").user


# --- public pages and headers -----------------------------------------------------------------
def test_landing_pricing_and_login_pages_answer_with_a_strict_csp(client, plans):
    for path in ("/", "/pricing", "/signup", "/login", "/changelog"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert b"<script>" not in response.content and b" on" + b"click=" not in response.content
    pricing = client.get("/pricing").content.decode()
    assert "Developer" in pricing and "$29.00" in pricing and "250,000" in pricing
    assert "each started 1,000 extra credits costs $0.40" in pricing


def test_api_docs_and_admin_keep_working_under_the_csp(client, admin_user):
    swagger = client.get("/v1/docs/")
    assert swagger.status_code == 200
    assert "'unsafe-inline'" in swagger["Content-Security-Policy"]  # relaxed for the docs pages only
    assert "frame-ancestors 'none'" in swagger["Content-Security-Policy"]
    assert client.get("/v1/redoc/").status_code == 200
    # the API's JSON answers skip building the policy (hot path); nosniff keeps them from rendering
    problem = client.get("/v1/prices")
    assert "Content-Security-Policy" not in problem and problem["X-Content-Type-Options"] == "nosniff"
    assert client.get("/admin/login/").status_code == 200
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200


def test_portal_pages_need_a_login(client):
    response = client.get("/portal/keys")
    assert response.status_code == 302 and response["Location"].startswith("/login?next=/portal/keys")


# --- sign-up, verification, login -----------------------------------------------------------------
def test_signup_creates_user_and_organization_and_sends_the_verification_email(
    client, plans, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/signup",
            {"email": "Ada@Example.test", "password": PASSWORD, "organization_name": "Analytical Engines"},
        )
    assert response.status_code == 200 and b"Check your email" in response.content
    user = User.objects.get(email="ada@example.test")
    assert Membership.objects.get(user=user).organization.name == "Analytical Engines"
    assert AuditEvent.objects.filter(action="organization.created", actor=user).exists()

    (message,) = mail.outbox
    link = re.search(r"(http\S+/verify-email)#(\S+)", message.body)
    assert link is not None and "?token=" not in message.body  # the token never travels in a URL
    token = link.group(2)
    asked = client.get("/verify-email")  # the link's page: its script posts the token after "#"
    assert asked.status_code == 200 and b"data-verify-fragment" in asked.content
    page = client.post("/verify-email", {"token": token})
    assert page.status_code == 200 and b"is verified" in page.content
    user.refresh_from_db()
    assert user.email_verified_at is not None
    assert client.post("/verify-email", {"token": "forged"}).status_code == 400
    assert client.post("/login", {"email": "ada@example.test", "password": PASSWORD}).status_code == 302
    assert client.get("/portal/").status_code == 200


def test_signup_with_a_registered_address_looks_the_same_and_tells_its_owner(
    client, plans, make_user, django_capture_on_commit_callbacks
):
    make_user("taken@example.test")
    with django_capture_on_commit_callbacks(execute=True):
        taken = client.post(
            "/signup", {"email": "taken@example.test", "password": PASSWORD, "organization_name": "X"}
        )
        fresh = client.post(
            "/signup", {"email": "fresh@example.test", "password": PASSWORD, "organization_name": "X"}
        )
    assert taken.status_code == fresh.status_code == 200

    def page(response) -> str:  # what the page says (its head and footer carry per-request tokens/ids)
        text = response.content.decode().replace("taken@", "fresh@")
        return text[text.index("<main") : text.index("</main>")]

    assert page(taken) == page(fresh)
    assert any(m.to == ["taken@example.test"] for m in mail.outbox)


def test_signup_errors_are_shown_next_to_the_fields(client, plans, make_user):
    response = client.post(
        "/signup", {"email": "new@example.test", "password": "password", "organization_name": "X"}
    )
    assert response.status_code == 400
    assert "too common" in response.content.decode() or "too short" in response.content.decode()
    assert not User.objects.filter(email="new@example.test").exists()


def test_login_sets_a_session_and_logout_needs_a_post(client, make_org):
    org = make_org()
    user = owner_of(org)
    bad = client.post("/login", {"email": user.email, "password": "wrong password!"})
    assert bad.status_code == 401 and b"do not match" in bad.content
    good = client.post("/login", {"email": user.email.upper(), "password": PASSWORD, "next": "/portal/keys"})
    assert good.status_code == 302 and good["Location"] == "/portal/keys"
    assert good.cookies["sessionid"]["httponly"] and good.cookies["sessionid"]["samesite"] == "Lax"
    assert client.get("/portal/").status_code == 200
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 302
    assert client.get("/portal/").status_code == 302


def test_login_open_redirect_is_refused(client, make_org):
    user = owner_of(make_org())
    response = client.post(
        "/login", {"email": user.email, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == "/portal/"


def test_login_is_limited_with_the_apis_counters(client, make_org, settings):
    settings.ACCOUNTS = {
        **settings.ACCOUNTS,
        "RATE_LOGIN_ACCOUNT": "3/m",
        "RATE_LOGIN_ACCOUNT_CEILING": "3/m",
    }
    user = owner_of(make_org())
    for _ in range(3):
        assert client.post("/login", {"email": user.email, "password": "wrong password!"}).status_code == 401
    refused = client.post("/login", {"email": user.email, "password": PASSWORD})
    assert refused.status_code == 429 and b"Too many attempts" in refused.content
    # the API's login shares the budget (accounts.login_limits: the same counters)
    api = client.post(
        "/v1/account/token", {"email": user.email, "password": PASSWORD}, content_type="application/json"
    )
    assert api.status_code == 429


# --- CSRF ------------------------------------------------------------------------------------------
def test_a_post_without_the_csrf_token_is_refused_with_a_page(make_org, login):
    org = make_org()
    client = login(owner_of(org), csrf=True)
    response = client.post(
        "/portal/keys", {"name": "sneaky", "environment": "live", "scopes": ["market_data:read"]}
    )
    assert response.status_code == 403
    assert b"Form refused" in response.content and b"Request id" in response.content
    assert not ApiKey.objects.filter(organization=org).exists()
    page = client.get("/portal/keys")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()
    ok = client.post(
        "/portal/keys",
        {"name": "fine", "environment": "live", "scopes": ["market_data:read"], "csrfmiddlewaretoken": token},
    )
    assert ok.status_code == 200 and ApiKey.objects.filter(organization=org, name="fine").exists()


# --- keys ---------------------------------------------------------------------------------------------
def test_create_key_shows_the_secret_once_and_it_works(make_org, login):
    org = make_org()
    owner = owner_of(org)
    client = login(owner)
    response = client.post(
        "/portal/keys",
        {
            "name": "server",
            "environment": "live",
            "scopes": ["market_data:read"],
            "expires_in_days": "30",
            "allowed_ips": "203.0.113.0/24\n198.51.100.7",
        },
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = re.search(rb'data-testid="secret" spellcheck="false" autocomplete="off"', response.content)
    full = re.search(r'value="(cs_live_[^"]+)"', response.content.decode()).group(1)
    assert secret and "shown only once" in response.content.decode()
    key = ApiKey.objects.get(organization=org, name="server")
    assert key.allowed_ips == ["203.0.113.0/24", "198.51.100.7/32"] and key.expires_at is not None
    assert key.created_by == owner
    assert AuditEvent.objects.filter(action="key.created", target_id=key.key_id).exists()
    listing = client.get("/portal/keys").content.decode()
    assert key.prefix in listing and full not in listing and owner.email in listing


def test_key_form_errors_come_from_the_service(make_org, login):
    org = make_org()
    client = login(owner_of(org))
    response = client.post(
        "/portal/keys",
        {"name": "bad", "environment": "live", "scopes": ["market_data:read"], "allowed_ips": "not-an-ip"},
    )
    assert response.status_code == 400 and "is not an IP address or CIDR range" in response.content.decode()
    assert not ApiKey.objects.filter(organization=org).exists()


def test_rotate_with_a_chosen_overlap_and_revoke_with_confirmation(make_org, login):
    org = make_org()
    client = login(owner_of(org))
    key, _ = api_key_create(organization=org, name="old")
    confirm = client.get(f"/portal/keys/{key.key_id}/rotate", HTTP_HX_REQUEST="true")
    assert confirm.status_code == 200 and b"<html" not in confirm.content  # an htmx fragment
    rotated = client.post(f"/portal/keys/{key.key_id}/rotate", {"overlap": "3600"})
    assert rotated.status_code == 200 and b"keeps working until" in rotated.content
    key.refresh_from_db()
    new = ApiKey.objects.get(rotated_from=key)
    assert 3500 < (key.expires_at - new.created_at).total_seconds() <= 3600
    again = client.post(f"/portal/keys/{key.key_id}/rotate", {"overlap": "3600"})
    assert again.status_code == 400 and b"already rotated" in again.content and b"Request id" in again.content

    page = client.get(f"/portal/keys/{new.key_id}/revoke")
    assert b"Yes, revoke this key" in page.content
    new.refresh_from_db()
    assert new.revoked_at is None  # the GET only asks
    done = client.post(f"/portal/keys/{new.key_id}/revoke")
    assert done.status_code == 302
    new.refresh_from_db()
    assert new.revoked_at is not None
    assert AuditEvent.objects.filter(action="key.revoked", target_id=new.key_id).exists()


def test_keys_of_another_organization_are_not_found(make_org, login):
    mine, theirs = make_org(), make_org()
    key, _ = api_key_create(organization=theirs, name="theirs")
    client = login(owner_of(mine))
    assert client.post(f"/portal/keys/{key.key_id}/revoke").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_role_that_may_not_manage_keys_sees_no_key_buttons_and_gets_403(make_org, member, login):
    org = make_org()
    billing_user = member(org, "billing")
    api_key_create(organization=org, name="prod")
    client = login(billing_user)
    dashboard = client.get("/portal/").content.decode()
    assert 'href="/portal/keys"' not in dashboard and "Create key" not in dashboard
    assert client.get("/portal/keys").status_code == 403
    refused = client.post(
        "/portal/keys", {"name": "x", "environment": "live", "scopes": ["market_data:read"]}
    )
    assert refused.status_code == 403 and b"may not do this" in refused.content
    key = ApiKey.objects.get(organization=org)
    assert client.post(f"/portal/keys/{key.key_id}/revoke").status_code == 403
    assert ApiKey.objects.filter(organization=org).count() == 1 and key.revoked_at is None

    developer = login(member(org, "developer"))
    keys_page = developer.get("/portal/keys").content.decode()
    assert "Create key" in keys_page and "Revoke" in keys_page
    team = developer.get("/portal/team").content.decode()
    assert "Send invitation" not in team and "Remove" not in team
    assert developer.post("/portal/team", {"email": "x@example.test", "role": "developer"}).status_code == 403


# --- team ---------------------------------------------------------------------------------------------
def test_invite_accept_change_role_and_remove_showing_the_keys_first(make_org, make_user, login):
    org = make_org()
    owner = login(owner_of(org))
    response = owner.post("/portal/team", {"email": "grace@example.test", "role": "developer"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(organization=org, email="grace@example.test")
    link = re.search(r"http\S+/invitation#(\S+)", mail.outbox[-1].body)
    assert link is not None and "?token=" not in mail.outbox[-1].body  # the token stays after "#"
    token = link.group(1)
    assert f'"token": "{token}"' in mail.outbox[-1].body  # the API way stays

    grace = make_user("grace@example.test")
    grace_client = login(grace)
    asked = grace_client.get("/invitation")  # the link's page: its script posts the token after "#"
    assert asked.status_code == 200 and b"data-verify-fragment" in asked.content
    opened = grace_client.post("/invitation", {"token": token})  # kept in the session, out of URLs
    assert opened.status_code == 302 and opened["Location"] == "/invitation"
    page = grace_client.get("/invitation")
    assert b"Accept the invitation" in page.content and token.encode() not in page.content
    joined = grace_client.post("/invitation", {"accept": "1"})
    assert joined.status_code == 302 and joined["Location"] == "/portal/?joined=1"
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    membership = Membership.objects.get(organization=org, user=grace)

    assert owner.post(f"/portal/team/members/{membership.pk}/role", {"role": "admin"}).status_code == 302
    membership.refresh_from_db()
    assert membership.role == "admin"

    key, _ = api_key_create(organization=org, name="grace's key", created_by=grace)
    confirm = owner.get(f"/portal/team/members/{membership.pk}/remove").content.decode()
    assert "will be revoked" in confirm and key.prefix in confirm
    assert owner.post(f"/portal/team/members/{membership.pk}/remove").status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action="member.removed", organization=org).exists()


def test_an_admin_is_not_offered_the_owner_role_and_cannot_remove_the_owner(make_org, member, login):
    org = make_org()
    admin = login(member(org, "admin"))
    page = admin.get("/portal/team").content.decode()
    assert '<option value="owner"' not in page
    owner_membership = Membership.objects.get(organization=org, role="owner")
    refused = admin.post(f"/portal/team/members/{owner_membership.pk}/remove")
    assert refused.status_code == 403 and b"Only an owner" in refused.content
    assert Membership.objects.filter(pk=owner_membership.pk).exists()


# --- several organizations ---------------------------------------------------------------------------
def test_the_switcher_scopes_every_page_to_the_chosen_organization(make_org, login):
    first = make_org("First Co")
    user = owner_of(first)
    second = make_org("Second Co", owner=user)
    api_key_create(organization=second, name="second-only")
    client = login(user)
    assert "second-only" not in client.get("/portal/keys").content.decode()
    switched = client.post("/portal/organization", {"organization": second.slug, "next": "/portal/keys"})
    assert switched.status_code == 302 and switched["Location"] == "/portal/keys"
    assert "second-only" in client.get("/portal/keys").content.decode()
    other = make_org("Not Mine")
    assert client.post("/portal/organization", {"organization": other.slug}).status_code == 404


# --- dashboard, billing, docs ----------------------------------------------------------------------------
def test_dashboard_shows_credits_chart_endpoints_keys_and_limits(make_org, login):
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import UsageRecord

    org = make_org()
    key, _ = api_key_create(organization=org, name="chart key")
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    UsageRecord.objects.create(
        organization_id=org.pk,
        key_id=key.key_id,
        endpoint="prices",
        status_class="2xx",
        hour=hour,
        requests=7,
        credits=7,
    )
    UsageRecord.objects.create(
        organization_id=org.pk,
        key_id=key.key_id,
        endpoint="candles",
        status_class="4xx",
        hour=hour - timedelta(days=2),
        requests=3,
        credits=0,
    )
    page = login(owner_of(org)).get("/portal/").content.decode()
    assert 'data-testid="credits-used">7 ' in page
    assert "10 calls" in page  # the chart's description
    assert "chart key" in page and "prices" in page and "candles" in page
    assert "60 requests/min" in page and 'class="s4xx"' in page


def test_dashboard_lists_the_last_failed_calls_of_its_organization_only(make_org, login, settings):
    from rest_framework.test import APIClient

    from apiplatform import redis_access
    from billing.redis_layout import failures_key

    org, other = make_org(), make_org()
    for o in (org, other):
        redis_access.client("gateway").delete(failures_key(o.pk))
    key, secret = api_key_create(organization=org, name="failing key")
    _other_key, other_secret = api_key_create(organization=other, name="other key")
    for full, rid in ((secret, "rid-ours-1"), (other_secret, "rid-theirs-1")):
        api = APIClient()
        api.credentials(HTTP_X_API_KEY=full)
        assert api.get("/v1/coins/no-such-coin", HTTP_X_REQUEST_ID=rid).status_code == 404
    page = login(owner_of(org)).get("/portal/").content.decode()
    table = page[page.index('data-testid="failed-calls"') :]
    assert "rid-ours-1" in table and "/v1/coins/no-such-coin" in table and "404" in table
    assert "failing key" in table and key.prefix in table and secret not in page
    assert "rid-theirs-1" not in page  # another organization's failures stay there
    empty = login(owner_of(other)).get("/portal/").content.decode()
    assert "rid-theirs-1" in empty
    redis_access.client("gateway").delete(failures_key(other.pk))
    assert 'data-testid="no-failed-calls"' in login(owner_of(other)).get("/portal/").content.decode()


def test_billing_page_without_stripe_says_so(make_org, login, settings):
    settings.STRIPE_SECRET_KEY = ""
    org = make_org()
    client = login(owner_of(org))
    page = client.get("/portal/billing").content.decode()
    assert "Billing is not configured" in page and "Free" in page
    refused = client.post("/portal/billing/checkout", {"plan": "pro"})
    assert refused.status_code == 503 and b"not configured" in refused.content


def test_docs_page_has_quickstart_snippets_with_the_key_prefix(make_org, login):
    org = make_org()
    key, _ = api_key_create(organization=org, name="k")
    page = login(owner_of(org)).get("/portal/docs").content.decode()
    assert key.prefix in page and "curl" in page and "httpx" in page and "fetch(" in page


def test_try_it_page_loads_swagger_from_our_files_under_the_strict_csp(make_org, login):
    response = login(owner_of(make_org())).get("/portal/docs/try")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "/static/portal/try-it.js" in page and 'data-schema-url="/v1/schema/?format=json"' in page
    assert "<script>" not in page and "https://" not in page.split("<main", 1)[1]


def test_unverified_user_can_ask_for_the_email_again(make_org, make_user, login):
    org = make_org(owner=make_user(verified=False))
    client = login(owner_of(org))
    response = client.post("/portal/verify-email/resend")
    assert response.status_code == 200 and b"on its way" in response.content
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    "path",
    ["/portal/", "/portal/keys", "/portal/team", "/portal/billing", "/portal/docs", "/portal/docs/try"],
)
def test_every_portal_page_renders_for_an_owner(path, make_org, login):
    response = login(owner_of(make_org())).get(path)
    assert response.status_code == 200
    assert isinstance(response.client, Client)


def test_past_due_shows_a_banner_on_the_dashboard_and_the_billing_page(make_org, login, plans):
    from django.utils import timezone

    from billing.models import OrganizationPlan

    org = make_org()
    OrganizationPlan.objects.create(
        organization=org,
        plan=plans["pro"],
        subscribed_plan=plans["pro"],
        status="past_due",
        stripe_customer_id="cus_x",
        stripe_subscription_id="sub_x",
        past_due_since=timezone.now(),
    )
    client = login(owner_of(org))
    dashboard = client.get("/portal/").content.decode()
    assert 'data-testid="past-due"' in dashboard and "Your last payment failed" in dashboard
    assert "Your last payment failed" in client.get("/portal/billing").content.decode()


def test_upgrade_redirects_to_checkout_and_only_billing_managers_are_offered_it(
    make_org, member, login, stripe_env, plans
):
    from django.core.management import call_command

    call_command("stripe_sync", stdout=open("/dev/null", "w"))  # noqa: SIM115
    org = make_org()
    owner = login(owner_of(org))
    page = owner.get("/portal/billing").content.decode()
    assert "Upgrade to Pro" in page and "Upgrade to Developer" in page
    response = owner.post("/portal/billing/checkout", {"plan": "pro"})
    assert response.status_code == 302 and response["Location"].startswith(stripe_env.base + "/pay/cs_")
    assert AuditEvent.objects.filter(organization=org, action="billing.checkout_started").exists()
    unknown = owner.post("/portal/billing/checkout", {"plan": "platinum"})
    assert unknown.status_code == 409 and b"not a plan you can buy" in unknown.content

    admin = login(member(org, "admin"))  # billing.read, not billing.manage
    assert "Upgrade to" not in admin.get("/portal/billing").content.decode()
    assert admin.post("/portal/billing/checkout", {"plan": "pro"}).status_code == 403
    assert admin.post("/portal/billing/manage").status_code == 403


def test_unknown_portal_paths_get_a_page_not_json(make_org, login):
    response = login(owner_of(make_org())).get("/portal/nowhere")
    assert response.status_code == 404 and b"<html" in response.content and b"Request id" in response.content


def test_a_logged_in_user_is_sent_on_from_login_and_signup(make_org, login):
    client = login(owner_of(make_org()))
    assert client.get("/login?next=/portal/keys")["Location"] == "/portal/keys"
    assert client.get("/signup")["Location"] == "/portal/"


# --- password change and reset ---------------------------------------------------------------------
def _api_login(email: str, password: str = PASSWORD) -> dict:
    response = Client().post(
        "/v1/account/token", {"email": email, "password": password}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _api_refresh_works(pair: dict) -> bool:
    response = Client().post(
        "/v1/account/token/refresh", {"refresh": pair["refresh"]}, content_type="application/json"
    )
    return response.status_code == 200


def test_password_change_keeps_this_browser_and_logs_out_every_other_session(make_org, login):
    user = owner_of(make_org())
    pair = _api_login(user.email)
    here, elsewhere = login(user), login(user)
    assert elsewhere.get("/portal/").status_code == 200
    wrong = here.post(
        "/portal/password", {"current_password": "not it at all", "new_password": "a new one!!"}
    )
    assert wrong.status_code == 400 and b"Is not your current password" in wrong.content
    weak = here.post("/portal/password", {"current_password": PASSWORD, "new_password": "password"})
    assert weak.status_code == 400 and (b"too common" in weak.content or b"too short" in weak.content)
    assert _api_refresh_works(pair)  # refusals change nothing

    new = "a brand new passphrase"
    done = here.post("/portal/password", {"current_password": PASSWORD, "new_password": new})
    assert done.status_code == 302 and done["Location"] == "/portal/password?changed=1&ended=1"
    assert b"Your password is changed" in here.get(done["Location"]).content  # still logged in
    assert here.get("/portal/").status_code == 200
    user.refresh_from_db()
    assert user.check_password(new)
    assert elsewhere.get("/portal/").status_code == 302  # Django's session hash: logged out
    assert not _api_refresh_works(pair)  # the API session ended
    assert Client().post("/login", {"email": user.email, "password": new}).status_code == 302


def test_password_change_needs_a_login_and_is_limited_per_user(client, make_org, login, settings):
    assert client.get("/portal/password")["Location"].startswith("/login?next=/portal/password")
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_PASSWORD_CHANGE_USER": "2/h"}
    user = owner_of(make_org())
    browser = login(user)
    for _ in range(2):
        browser.post("/portal/password", {"current_password": "wrong guess!!", "new_password": "whatever x1"})
    refused = browser.post(
        "/portal/password", {"current_password": PASSWORD, "new_password": "a new passphrase"}
    )
    assert refused.status_code == 429 and b"Too many attempts" in refused.content
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_reset_answers_the_same_and_the_link_opens_the_portal(client, make_org):
    user = owner_of(make_org())
    unknown = client.post("/password/reset", {"email": "nobody@example.test"})
    known = client.post("/password/reset", {"email": user.email.upper()})
    assert unknown.status_code == known.status_code == 200

    def main(response) -> str:
        text = response.content.decode()
        return text[text.index("<main") : text.index("</main>")]

    assert main(unknown) == main(known) and "If an account uses this address" in main(known)
    (message,) = mail.outbox  # nothing for the unknown address
    link = re.search(r"(http\S+/password/reset/confirm)#(\S+)", message.body)
    assert link is not None and "?token=" not in message.body  # the token stays after "#"
    assert "/v1/account/password/reset/confirm" in message.body  # the API way stays
    token = link.group(2)
    page = client.get("/password/reset/confirm")
    assert page.status_code == 200 and b"data-token-fragment" in page.content

    weak = client.post("/password/reset/confirm", {"token": token, "new_password": "12345678901"})
    assert weak.status_code == 400 and b"entirely numeric" in weak.content
    new = "reset to something new"
    done = client.post("/password/reset/confirm", {"token": token, "new_password": new})
    assert done.status_code == 200 and b"Password changed" in done.content
    user.refresh_from_db()
    assert user.check_password(new)
    again = client.post("/password/reset/confirm", {"token": token, "new_password": "and yet another one"})
    assert again.status_code == 400 and b"Ask for a new link" in again.content  # single-use
    assert (
        client.post("/password/reset/confirm", {"token": "forged.x", "new_password": new}).status_code == 400
    )


def test_password_reset_logs_out_the_users_portal_and_api_sessions(client, make_org, login):
    user = owner_of(make_org())
    pair = _api_login(user.email)
    browser = login(user)
    client.post("/password/reset", {"email": user.email})
    token = re.search(r"/password/reset/confirm#(\S+)", mail.outbox[-1].body).group(1)
    assert (
        client.post(
            "/password/reset/confirm", {"token": token, "new_password": "fresh start here"}
        ).status_code
        == 200
    )
    assert browser.get("/portal/").status_code == 302
    assert not _api_refresh_works(pair)


def test_password_reset_is_limited_per_address_with_the_apis_counters(client, make_org, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_PASSWORD_RESET_ACCOUNT": "2/h"}
    user = owner_of(make_org())
    for _ in range(2):
        assert client.post("/password/reset", {"email": user.email}).status_code == 200
    refused = client.post("/password/reset", {"email": user.email})
    assert refused.status_code == 429 and b"Too many attempts" in refused.content
    api = client.post("/v1/account/password/reset", {"email": user.email}, content_type="application/json")
    assert api.status_code == 429  # one budget for pages and API
    assert len(mail.outbox) == 2


# --- sessions ---------------------------------------------------------------------------------------
def test_sessions_page_lists_the_users_live_api_sessions_and_ends_one(make_org, login):
    user, other = owner_of(make_org()), owner_of(make_org())
    first, second = _api_login(user.email), _api_login(user.email)
    theirs = _api_login(other.email)
    Client().post("/v1/account/logout", HTTP_AUTHORIZATION=f"Bearer {second['access']}")
    browser = login(user)
    page = browser.get("/portal/sessions")
    assert page.status_code == 200
    text = page.content.decode()
    from accounts.models import Session

    live = Session.objects.get(user=user, revoked_at=None)
    assert f"/portal/sessions/{live.pk}/end" in text and text.count('/end"') == 1  # the ended one is gone
    assert "127.0.0.1" in text
    other_session = Session.objects.get(user=other)
    assert browser.post(f"/portal/sessions/{other_session.pk}/end").status_code == 404  # not theirs
    assert _api_refresh_works(theirs)
    ended = browser.post(f"/portal/sessions/{live.pk}/end")
    assert ended.status_code == 302 and not _api_refresh_works(first)
    assert "No API session is open" in browser.get("/portal/sessions").content.decode()


def test_log_out_everywhere_ends_api_sessions_and_other_browsers_but_not_this_one(make_org, login):
    user = owner_of(make_org())
    pairs = [_api_login(user.email), _api_login(user.email)]
    here, elsewhere = login(user), login(user)
    assert here.get("/portal/sessions/everywhere").status_code == 405  # a POST only
    done = here.post("/portal/sessions/everywhere")
    assert done.status_code == 302 and "ended=2" in done["Location"]
    assert b"Logged out everywhere: 2 API sessions ended" in here.get(done["Location"]).content
    assert here.get("/portal/").status_code == 200
    assert elsewhere.get("/portal/").status_code == 302
    assert not any(_api_refresh_works(p) for p in pairs)
    # the password is unchanged: logging in again works everywhere
    assert Client().post("/login", {"email": user.email, "password": PASSWORD}).status_code == 302


# --- invitations -----------------------------------------------------------------------------------
def test_an_invited_stranger_signs_up_through_the_link_and_joins_without_the_token_in_any_url(
    client, make_org, login
):
    org = make_org()
    login(owner_of(org)).post("/portal/team", {"email": "hopper@example.test", "role": "developer"})
    token = re.search(r"/invitation#(\S+)", mail.outbox[-1].body).group(1)
    assert client.post("/invitation", {"token": token})["Location"] == "/invitation"
    page = client.get("/invitation").content.decode()
    assert 'href="/signup?join=1"' in page and 'href="/login?next=/invitation"' in page
    assert token not in page
    signup = client.get("/signup?join=1").content.decode()
    assert "You are joining the organization that invited you" in signup
    assert "joining" not in client.get("/signup").content.decode()  # a plain sign-up is not a join
    joined = client.post(
        "/signup", {"email": "hopper@example.test", "password": PASSWORD, "invitation": token}
    )
    assert joined.status_code == 302 and joined["Location"] == "/portal/?joined=1"
    assert Membership.objects.filter(organization=org, user__email="hopper@example.test").exists()
    assert "portal_invitation" not in client.session  # used up


def test_an_old_invitation_link_with_the_token_in_the_query_still_works_and_a_bad_one_says_so(
    make_org, make_user, login
):
    org = make_org()
    login(owner_of(org)).post("/portal/team", {"email": "lovelace@example.test", "role": "billing"})
    token = re.search(r"/invitation#(\S+)", mail.outbox[-1].body).group(1)
    other = login(make_user("someone.else@example.test"))
    assert other.get(f"/invitation?token={token}")["Location"] == "/invitation"  # off the address bar
    wrong = other.post("/invitation", {"accept": "1"})
    assert wrong.status_code == 400 and b"new invitation" in wrong.content  # not the invited address
    assert not Membership.objects.filter(organization=org, user__email="someone.else@example.test").exists()


# --- two-factor authentication -------------------------------------------------------------------
def _totp_code(device) -> str:
    from django_otp.oath import totp

    return str(totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)).zfill(
        device.digits
    )


def _enable_two_factor(browser, user) -> list[str]:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    start = browser.post("/portal/two-factor", {"action": "start"})
    assert start.status_code == 200 and b"<svg" in start.content and b"totp-secret" in start.content
    assert start["Cache-Control"] == "no-store"
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    done = browser.post("/portal/two-factor", {"action": "confirm", "code": _totp_code(device)})
    assert done.status_code == 200 and "no-store" in done["Cache-Control"]
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", done.content.decode())
    assert len(codes) == 10
    return codes


def test_two_factor_set_up_shows_a_qr_code_and_recovery_codes_once_and_is_audited(make_org, login, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a wrong code, then the right one at once
    org = make_org()
    user = owner_of(org)
    browser = login(user)
    page = browser.get("/portal/two-factor")
    assert page.status_code == 200 and b"Set up two-factor authentication" in page.content
    browser.post("/portal/two-factor", {"action": "start"})
    wrong = browser.post("/portal/two-factor", {"action": "confirm", "code": "000000"})
    assert wrong.status_code == 400 and b"not right" in wrong.content and b"<svg" in wrong.content
    codes = _enable_two_factor(browser, user)  # starting again replaces the unconfirmed device
    again = browser.get("/portal/two-factor").content.decode()
    assert "<strong>On.</strong>" in again and not any(c in again for c in codes)  # shown once
    event = AuditEvent.objects.get(organization=org, action="user.two_factor_enabled")
    assert event.actor == user and "secret" not in str(event.data)


def test_login_asks_for_the_code_and_a_recovery_code_works_once(make_org, login, client, settings):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # django-otp's delay after a failure (tested by django-otp)
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    user = owner_of(make_org())
    codes = _enable_two_factor(login(user), user)
    step = client.post("/login", {"email": user.email, "password": PASSWORD, "next": "/portal/keys"})
    assert step.status_code == 302 and step["Location"] == "/login/two-factor"
    assert client.get("/portal/").status_code == 302  # the password alone logs nobody in
    bad = client.post("/login/two-factor", {"code": "123456"})
    assert bad.status_code == 401 and client.get("/portal/").status_code == 302
    device = TOTPDevice.objects.get(user=user)
    device.last_t = -1  # simulate the next 30-second step (the set-up used this one's code)
    device.save()
    ok = client.post("/login/two-factor", {"code": _totp_code(device)})
    assert ok.status_code == 302 and ok["Location"] == "/portal/keys"
    assert client.get("/portal/").status_code == 200

    other = Client()
    other.post("/login", {"email": user.email, "password": PASSWORD})
    assert other.post("/login/two-factor", {"code": codes[0]}).status_code == 302  # a recovery code
    third = Client()
    third.post("/login", {"email": user.email, "password": PASSWORD})
    assert third.post("/login/two-factor", {"code": codes[0]}).status_code == 401  # used up


def test_the_code_step_expires_and_is_limited_per_user(make_org, login, client, settings):
    import time as time_module

    settings.ACCOUNTS = {**settings.ACCOUNTS, "RATE_LOGIN_ACCOUNT": "2/m"}
    user = owner_of(make_org())
    _enable_two_factor(login(user), user)
    client.post("/login", {"email": user.email, "password": PASSWORD})
    for _ in range(2):
        client.post("/login/two-factor", {"code": "000000"})
    assert client.post("/login/two-factor", {"code": "000000"}).status_code == 429
    session = client.session
    pending = session["portal_two_factor"]
    session["portal_two_factor"] = {**pending, "at": time_module.time() - 301}  # simulated time
    session.save()
    expired = client.get("/login/two-factor")
    assert expired.status_code == 302 and expired["Location"] == "/login?expired=1"
    assert Client().get("/login/two-factor")["Location"] == "/login?expired=1"  # no password step


def test_two_factor_is_turned_off_only_with_a_code_and_audited(make_org, login, client, settings):
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    org = make_org()
    user = owner_of(org)
    browser = login(user)
    codes = _enable_two_factor(browser, user)
    refused = browser.post("/portal/two-factor", {"action": "disable", "code": "99999999"})
    assert refused.status_code == 400 and b"stays on" in refused.content
    off = browser.post("/portal/two-factor", {"action": "disable", "code": codes[1]})
    assert off.status_code == 302 and off["Location"] == "/portal/two-factor?disabled=1"
    assert AuditEvent.objects.filter(organization=org, action="user.two_factor_disabled").exists()
    login_again = client.post("/login", {"email": user.email, "password": PASSWORD})
    assert login_again["Location"] == "/portal/"  # no code asked any more


def test_a_wrong_code_delays_the_next_try_django_otps_throttle(make_org, login, client):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = owner_of(make_org())
    _enable_two_factor(login(user), user)
    client.post("/login", {"email": user.email, "password": PASSWORD})
    assert client.post("/login/two-factor", {"code": "000000"}).status_code == 401
    device = TOTPDevice.objects.get(user=user)
    device.last_t = -1
    device.save(update_fields=["last_t"])
    # the right code at once is refused too: the device waits after a failure (brute force)
    assert client.post("/login/two-factor", {"code": _totp_code(device)}).status_code == 401
