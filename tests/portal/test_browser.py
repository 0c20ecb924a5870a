"""The portal in a real browser: Debian's Chromium (Playwright) against gunicorn on loopback, a Celery
worker (verification email, Stripe events), the Stripe stand-in. Screenshots of every page go to
test-artifacts/portal/; every page is scanned with axe-core (no serious or critical violation) and
checked at phone width; a page's console must show no CSP violation."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from accounts.models import ApiKey, Membership, User
from billing import selectors as billing_selectors
from billing.metering import usage_flush
from tests.ingestion_tasks.conftest import wait_until
from tests.portal import browser as b
from tests.portal.conftest import PASSWORD
from tests.stripe_billing.processes import platform_with_stripe
from tests.stripe_standin.fixtures import TEST_WEBHOOK_SECRET
from tests.stripe_standin.webhooks import event, signature_header

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not b.CHROMIUM.exists(), reason="Debian's chromium is missing (scripts/test.sh installs it)"
    ),
]


@pytest.fixture
def _fast_password_hashing():
    """Overrides the package's: the web process checks passwords with the project's hashers."""


@pytest.fixture(scope="session")
def axe() -> str:
    return b.axe_source()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for this module. Playwright's sync API runs an event loop in this thread while it
    lives, so Django's async-safety check would refuse the tests' plain ORM calls: allowed for exactly
    that time (the variable must not leak into other modules: ``check --deploy`` refuses it)."""
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=str(b.CHROMIUM), args=["--no-sandbox"])
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def live(plans, stripe_env, tmp_path):
    """gunicorn + a Celery worker on the test database, email to files, Stripe = the stand-in."""
    outbox = tmp_path / "mail"
    outbox.mkdir()
    email = {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(outbox),
    }
    with platform_with_stripe(stripe_env, tmp_path, env=email) as (base, _worker):
        yield base, outbox


class Console:
    """Console errors of a context's pages (a CSP violation is one)."""

    def __init__(self, context: BrowserContext):
        self.errors: list[str] = []
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def csp_violations(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e]


def visit(page: Page, axe: str, name: str, *, check_axe: bool = True) -> None:
    if check_axe:
        b.axe_check(page, axe, name)
    b.shot(page, name)


def deliver(base: str, obj: dict, type_: str) -> httpx.Response:
    body = json.dumps(event(type_, obj)).encode()
    headers = {
        "Stripe-Signature": signature_header(body, TEST_WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    return httpx.post(f"{base}/billing/stripe/webhook", content=body, headers=headers, timeout=10)


def test_journey_signup_key_call_dashboard_upgrade_invite_remove(live, browser, axe, stripe_env):
    base, outbox = live
    context = browser.new_context(viewport=b.DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    console = Console(context)
    page = context.new_page()

    # landing → sign up
    page.goto(f"{base}/")
    expect(page.get_by_role("heading", name="Live example")).to_be_visible()
    visit(page, axe, "01-landing")
    page.get_by_role("link", name="Get a free API key").click()
    expect(page).to_have_url(f"{base}/signup")
    visit(page, axe, "02-signup")
    page.get_by_label("Email address").fill("ada@example.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Organization name").fill("Analytical Engines")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    visit(page, axe, "03-signup-done")

    # verify the email from the outbox (sent by the worker): the link keeps the token after "#"
    text = wait_until(lambda: "\n".join(b.mails(outbox)), timeout=30, message="the verification email")
    link = re.search(r"http\S+(/verify-email#\S+)", text).group(1)  # PUBLIC_BASE_URL's host: this server
    page.goto(base + link)
    expect(page.get_by_text("is verified")).to_be_visible()
    assert "#" not in page.url and "token" not in page.url
    visit(page, axe, "04-email-verified")
    assert User.objects.get(email="ada@example.test").email_verified_at is not None

    # log in
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill("ada@example.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    visit(page, axe, "03-dashboard-new")

    # create a key, copy it
    page.goto(f"{base}/portal/keys")
    visit(page, axe, "05-keys-empty")
    page.get_by_label("Name", exact=True).fill("journey key")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("it is shown only once")).to_be_visible()
    visit(page, axe, "06-key-created")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert secret.startswith("cs_live_") and secret == page.get_by_label("Your API key").input_value()

    # a real call with it, then it shows on the dashboard after the usage flush
    call = httpx.get(
        f"{base}/v1/prices", params={"ids": "bitcoin"}, headers={"X-API-Key": secret}, timeout=10
    )
    assert call.status_code == 200, call.text
    usage_flush()
    page.goto(f"{base}/portal/")
    expect(page.get_by_test_id("calls-by-key")).to_contain_text("journey key")
    expect(page.get_by_test_id("credits-used")).not_to_have_text(re.compile(r"^0 "))
    visit(page, axe, "07-dashboard-after-call")

    # a form posted without the CSRF token is refused
    refused = context.request.post(f"{base}/portal/keys", form={"name": "csrf", "environment": "live"})
    assert refused.status == 403 and "Form refused" in refused.text()

    # upgrade through Checkout (the stand-in), confirmed by Stripe's webhook applied by the worker
    page.goto(f"{base}/portal/billing")
    expect(page.get_by_test_id("current-plan")).to_have_text("Free")
    visit(page, axe, "08-billing-free")
    page.get_by_role("button", name="Upgrade to Pro").click()
    page.wait_for_url(re.compile(r"/pay/cs_"))
    session_id = urlparse(page.url).path.rsplit("/", 1)[-1]
    done = stripe_env.complete_checkout(session_id)
    assert deliver(base, done["session"], "checkout.session.completed").status_code == 200
    organization = Membership.objects.get(user__email="ada@example.test").organization
    wait_until(
        lambda: billing_selectors.organization_plan_limits(organization_id=organization.pk).name == "pro",
        timeout=30,
        message="the worker applying checkout.session.completed",
    )
    page.goto(f"{base}/portal/billing?checkout=success")
    expect(page.get_by_test_id("current-plan")).to_have_text("Pro")
    visit(page, axe, "09-billing-pro")
    page.goto(f"{base}/portal/")
    expect(page.get_by_test_id("plan-name")).to_have_text("Pro")
    expect(page.get_by_text("1,200 requests/min")).to_be_visible()

    # invite a teammate, who signs up through the invitation and creates a key
    page.goto(f"{base}/portal/team")
    page.get_by_label("Email address").fill("grace@example.test")
    page.get_by_label("Role", exact=True).select_option("developer")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent.")).to_be_visible()
    visit(page, axe, "10-team-invited")
    invitation_mail = next(m for m in b.mails(outbox) if "grace@example.test" in m and "invited you" in m)
    invite_link = re.search(r"http\S+(/invitation#\S+)", invitation_mail).group(1)

    mate_context = browser.new_context(viewport=b.DESKTOP)
    mate = mate_context.new_page()
    mate.goto(base + invite_link)  # the script posts the token after "#"; the page drops it
    expect(mate.get_by_role("link", name="Sign up and join")).to_be_visible()
    assert mate.url == f"{base}/invitation"
    visit(mate, axe, "11-invitation")
    mate.get_by_role("link", name="Sign up and join").click()
    mate.get_by_label("Email address").fill("grace@example.test")
    mate.get_by_label("Password").fill(PASSWORD)
    mate.get_by_role("button", name="Sign up").click()
    expect(mate).to_have_url(re.compile(r"/portal/"))
    mate.goto(f"{base}/portal/keys")
    mate.get_by_label("Name", exact=True).fill("grace key")
    mate.get_by_role("button", name="Create key").click()
    mate_key = mate.get_by_label("Your API key").input_value()
    assert (
        httpx.get(f"{base}/v1/prices", params={"ids": "bitcoin"}, headers={"X-API-Key": mate_key}).status_code
        == 200
    )

    # the owner removes them; the confirmation lists the keys the removal revokes
    grace = Membership.objects.get(user__email="grace@example.test", organization=organization)
    page.goto(f"{base}/portal/team")
    page.locator(f"#member-{grace.pk}").get_by_role("link", name="Remove").click()
    expect(page.get_by_test_id("keys-to-revoke")).to_contain_text("grace key")
    expect(page).to_have_url(f"{base}/portal/team")  # the confirmation was loaded inline by htmx
    assert page.evaluate("document.activeElement.tagName") == "H3"  # and took the focus
    visit(page, axe, "12-team-remove-confirm")
    page.get_by_role("button", name="Yes, remove grace@example.test").click()
    expect(page.get_by_text("Member removed.")).to_be_visible()
    assert not Membership.objects.filter(pk=grace.pk).exists()
    # the removal revoked her key: the web process refuses it (within the documented second)
    wait_until(
        lambda: (
            httpx.get(f"{base}/v1/prices", params={"ids": "bitcoin"}, headers={"X-API-Key": mate_key})
            .json()
            .get("type", "")
            .endswith("/problems/api-key-revoked")
        ),
        timeout=2,
        message="the removed member's key to be refused",
    )
    mate.goto(f"{base}/portal/keys")
    expect(mate.get_by_text("You do not belong to any organization.")).to_be_visible()

    # log out
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
    assert console.csp_violations() == []
    mate_context.close()
    context.close()


def _owner_with_data(make_org):
    from accounts.services.api_keys import api_key_create

    organization = make_org("Screens Ltd")
    owner = Membership.objects.get(organization=organization, role="owner").user
    owner.email_verified_at = owner.date_joined
    owner.save(update_fields=["email_verified_at"])
    api_key_create(organization=organization, name="production server", created_by=owner)
    return organization, owner


def _log_in(page: Page, base: str, email: str, *, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))


PAGES = [
    ("landing", "/"),
    ("pricing", "/pricing"),
    ("changelog", "/changelog"),
    ("dashboard", "/portal/"),
    ("keys", "/portal/keys"),
    ("team", "/portal/team"),
    ("alerts", "/portal/alerts"),
    ("billing", "/portal/billing"),
    ("docs", "/portal/docs"),
    ("try-it", "/portal/docs/try"),
    ("sessions", "/portal/sessions"),
    ("password", "/portal/password"),
    ("two-factor", "/portal/two-factor"),
]


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_passes_axe_and_fits_the_screen(width, live, browser, axe, make_org, member):
    base, _outbox = live
    organization, owner = _owner_with_data(make_org)
    key = ApiKey.objects.get(organization=organization)
    mate = member(organization, "developer")
    viewport = b.PHONE if width == "phone" else b.DESKTOP
    anonymous = browser.new_context(viewport=viewport)
    console = Console(anonymous)
    page = anonymous.new_page()
    for name, path in [
        ("signup", "/signup"),
        ("login", "/login"),
        ("verify-email-invalid", "/verify-email?token=x"),
        ("password-reset", "/password/reset"),
        ("password-reset-confirm", "/password/reset/confirm"),
        ("invitation-ask", "/invitation"),
    ]:
        page.goto(base + path)
        visit(page, axe, f"{width}-{name}")
        assert b.fits_width(page), f"{name} scrolls sideways at {width} width"
    context = browser.new_context(viewport=viewport)
    logged = Console(context)
    page = context.new_page()
    _log_in(page, base, owner.email)
    extra = [
        ("key-rotate", f"/portal/keys/{key.key_id}/rotate"),
        ("key-revoke", f"/portal/keys/{key.key_id}/revoke"),
        ("member-remove", f"/portal/team/members/{Membership.objects.get(user=mate).pk}/remove"),
        ("not-allowed", "/portal/keys/nope/revoke"),
    ]
    for name, path in PAGES + extra:
        page.goto(base + path)
        visit(page, axe, f"{width}-{name}")
        assert b.fits_width(page), f"{name} scrolls sideways at {width} width"
    # keyboard: the skip link is the first stop and shows a visible focus
    page.goto(f"{base}/portal/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    assert console.csp_violations() == [] and logged.csp_violations() == []
    anonymous.close()
    context.close()


def test_a_billing_member_sees_no_key_buttons_and_a_post_anyway_is_refused(live, browser, make_org, member):
    base, _outbox = live
    organization, _owner = _owner_with_data(make_org)
    accountant = member(organization, "billing")
    context = browser.new_context(viewport=b.DESKTOP)
    page = context.new_page()
    _log_in(page, base, accountant.email)
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)
    page.goto(f"{base}/portal/keys")
    expect(page.get_by_text("may not do this")).to_be_visible()
    b.shot(page, "role-billing-keys-403")
    # a POST with a valid CSRF token (taken from a page it may see) is still refused
    page.goto(f"{base}/portal/team")
    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    refused = context.request.post(
        f"{base}/portal/keys",
        form={
            "name": "sneaky",
            "environment": "live",
            "scopes": "market_data:read",
            "csrfmiddlewaretoken": token,
        },
        headers={"Referer": f"{base}/portal/team"},
    )
    assert refused.status == 403 and "may not do this" in refused.text()
    assert ApiKey.objects.filter(organization=organization).count() == 1
    context.close()


def test_alerts_page_creates_an_alert_shows_the_secret_once_and_lists_it(live, browser, axe, make_org):
    from marketdata import services as market
    from marketdata.alerts.models import Alert, WebhookEndpoint

    base, _outbox = live
    market.coins_upsert(coins=[market.CoinIn("bitcoin", "btc", "Bitcoin")])
    organization, owner = _owner_with_data(make_org)
    context = browser.new_context(viewport=b.DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    console = Console(context)
    page = context.new_page()
    _log_in(page, base, owner.email)
    page.get_by_role("link", name="Alerts").click()
    expect(page).to_have_url(re.compile(r"/portal/alerts$"))
    expect(page.get_by_text("No alerts yet.")).to_be_visible()
    # portal.js shows the fields of the chosen condition type only
    expect(page.get_by_label("Window")).to_be_hidden()
    page.get_by_label("Condition").select_option("change")
    expect(page.get_by_label("Window")).to_be_visible()
    expect(page.get_by_label("Indicator", exact=True)).to_be_hidden()
    visit(page, axe, "alerts-empty")
    # a refusal comes back as sentences next to the fields, with the request id
    page.get_by_label("Coin id").fill("bitcoin")
    page.get_by_label("Level").fill("5")
    page.get_by_label("New webhook URL").fill("https://hooks.example.com/candlestack")
    page.get_by_role("button", name="Create alert").click()
    expect(page.get_by_text("Required by a change condition")).to_be_visible()
    expect(page.get_by_role("alert").get_by_text("Request id")).to_be_visible()
    visit(page, axe, "alerts-form-error")
    # a price alert to a new URL: its endpoint's signing secret is shown once
    page.get_by_label("Name", exact=True).fill("BTC above 100k")
    page.get_by_label("Condition").select_option("price")
    page.get_by_label("Level").fill("100000")
    page.get_by_role("button", name="Create alert").click()
    expect(page.get_by_text("it is shown only once")).to_be_visible()
    visit(page, axe, "alerts-secret")
    page.get_by_role("button", name="Copy").click()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert (
        secret.startswith("whsec_")
        and secret == WebhookEndpoint.objects.get(organization=organization).secret
    )
    page.get_by_role("link", name="I have copied it").click()
    row = page.locator("tr", has_text="BTC above 100k")
    expect(row).to_contain_text("price above 100000 USD")
    expect(row).to_contain_text("waiting for a value")
    expect(page.get_by_text("https://hooks.example.com/candlestack").first).to_be_visible()
    assert secret not in page.content()
    visit(page, axe, "alerts-listed")
    # pause, then delete after the confirmation (loaded by htmx under the row)
    row.get_by_role("button", name="Pause").click()
    expect(page.locator("tr", has_text="BTC above 100k")).to_contain_text("paused")
    page.locator("tr", has_text="BTC above 100k").get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name=re.compile("Delete BTC above 100k"))).to_be_focused()
    visit(page, axe, "alerts-delete-confirm")
    page.get_by_role("button", name="Yes, delete this alert").click()
    expect(page.get_by_text("Alert deleted.")).to_be_visible()
    assert not Alert.objects.filter(organization_id=organization.pk).exists()
    b.shot(page, "alerts-after-delete")
    assert console.csp_violations() == []
    context.close()


def test_admin_and_the_api_docs_still_work_under_the_csp(live, browser):
    base, _outbox = live
    context = browser.new_context(viewport=b.DESKTOP)
    console = Console(context)
    page = context.new_page()
    page.goto(f"{base}/admin/login/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    b.shot(page, "admin-login")
    assert console.csp_violations() == []
    page.goto(f"{base}/v1/docs/")
    expect(page.locator(".swagger-ui .information-container")).to_be_visible(timeout=15_000)
    b.shot(page, "api-swagger")
    page.goto(f"{base}/v1/redoc/")
    # Redoc renders the whole document (2.8 MB with the indicator catalogue's 150 operations) before
    # it shows the title: slow on a loaded 2-core machine, so a generous wait
    expect(page.get_by_text("Candlestack API").first).to_be_visible(timeout=90_000)
    b.shot(page, "api-redoc", full_page=False)
    # only what drf-spectacular's Redoc page fetches from other hosts is refused (Google Fonts, the
    # cdn.redoc.ly logo): every asset is served by us
    assert [e for e in console.csp_violations() if "https://" not in e] == []
    context.close()


def test_try_it_keeps_the_pasted_key_in_the_browser_and_sends_it(live, browser, axe, make_org):
    """Swagger UI "Try it out" with the key pasted once: kept in localStorage across a reload, sent on
    a try-it of /v1/prices (200), gone after "Forget key"; the page holds the strict CSP."""
    from accounts.services.api_keys import api_key_create

    base, _outbox = live
    organization, owner = _owner_with_data(make_org)
    _row, full_key = api_key_create(organization=organization, name="explorer", environment="test")
    context = browser.new_context(viewport=b.DESKTOP)
    console = Console(context)
    page = context.new_page()
    _log_in(page, base, owner.email)
    page.goto(f"{base}/portal/docs")
    page.get_by_role("link", name="Try the API").click()
    expect(page).to_have_url(f"{base}/portal/docs/try")
    prices = page.locator("[id$='-prices_retrieve']")
    expect(prices).to_be_visible(timeout=20_000)
    page.get_by_role("textbox", name="API key").fill(full_key)
    page.get_by_role("button", name="Keep in this browser").click()
    expect(page.get_by_text("Kept in this browser: cs_test_")).to_be_visible()
    assert full_key not in page.content()  # shown by its prefix only; the field is emptied

    page.reload()
    expect(page.get_by_text("Kept in this browser: cs_test_")).to_be_visible()
    assert page.evaluate("Object.values(localStorage)") == [full_key]
    prices = page.locator("[id$='-prices_retrieve']")
    expect(prices).to_be_visible(timeout=20_000)
    visit(page, axe, "try-it-with-key")
    prices.locator(".opblock-summary").first.click()
    # the required `ids` comes pre-filled from the schema's example (bitcoin, ethereum)
    expect(prices.locator("tr[data-param-name='ids'] input").first).to_have_value("bitcoin")
    with page.expect_response(lambda r: "/v1/prices?ids=bitcoin" in r.url) as answer:
        prices.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200, answer.value.text()
    assert answer.value.request.headers.get("x-api-key") == full_key
    expect(prices.locator(".live-responses-table tbody .response-col_status").first).to_have_text(
        re.compile(r"^\s*200"), timeout=10_000
    )
    visit(page, axe, "try-it-200")  # the expanded operation and its answer scanned too

    page.get_by_role("button", name="Forget key").click()
    expect(page.get_by_text("No key kept in this browser.")).to_be_visible()
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    expect(page.get_by_text("No key kept in this browser.")).to_be_visible()
    assert console.csp_violations() == []
    context.close()


def test_forgotten_password_journey_through_the_emailed_link(live, browser, axe, make_org):
    base, outbox = live
    organization = make_org()
    owner = Membership.objects.get(organization=organization, role="owner").user
    context = browser.new_context()
    console = Console(context)
    page = context.new_page()
    page.goto(f"{base}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email address").fill(owner.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_text("If an account uses this address")).to_be_visible()
    # the worker sends the email; its link keeps the token after "#"
    text = wait_until(lambda: "\n".join(b.mails(outbox)), timeout=30, message="the reset email")
    link = re.search(r"http\S+(/password/reset/confirm#\S+)", text).group(1)
    page.goto(base + link)
    assert page.evaluate("window.location.hash") == ""  # out of the address bar and history
    expect(page.get_by_label("New password")).to_be_focused()
    visit(page, axe, "password-reset-link")
    page.get_by_label("New password").fill("a whole new passphrase")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    _log_in(page, base, owner.email, password="a whole new passphrase")
    assert console.csp_violations() == []
    context.close()


def test_two_factor_set_up_and_login_with_the_app_code(live, browser, axe, make_org):
    import base64

    from django_otp.oath import totp

    base, _outbox = live
    owner = Membership.objects.get(organization=make_org(), role="owner").user
    context = browser.new_context(viewport=b.PHONE)
    console = Console(context)
    page = context.new_page()
    _log_in(page, base, owner.email)
    page.goto(f"{base}/portal/two-factor")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    expect(page.locator(".qr svg")).to_be_visible()
    visit(page, axe, "two-factor-setup")
    assert b.fits_width(page)
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    page.get_by_label("Code").fill(str(totp(key)).zfill(6))
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    visit(page, axe, "two-factor-codes")
    recovery = page.get_by_test_id("recovery-codes").locator("li").first.inner_text()
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(owner.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/login/two-factor$"))
    visit(page, axe, "login-two-factor")
    page.get_by_label("Code").fill(recovery)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/portal/$"))
    assert console.csp_violations() == []
    context.close()
