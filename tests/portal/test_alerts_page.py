"""The portal's alerts page through Django's test client: list with state, create (a new endpoint's
secret shown once), the condition's rules are the API's, pause/resume, delete with a confirmation,
"send test", replay, and the role rules (not offered; 403 when posted anyway)."""

from __future__ import annotations

import pytest

from accounts.models import Membership, User
from marketdata import services as market
from marketdata.alerts import services as alert_services
from marketdata.alerts.models import Alert, Delivery, WebhookEndpoint
from tests.alerts.conftest import _start_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK = True  # the test's receiver is on loopback


@pytest.fixture
def coin(db) -> int:
    return market.coins_upsert(coins=[market.CoinIn("bitcoin", "btc", "Bitcoin")])["bitcoin"]


@pytest.fixture
def receiver():
    rec, server = _start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


def owner_of(org) -> User:
    return Membership.objects.get(organization=org, role="owner").user


def price_alert(org, coin: int, receiver):
    """A webhook endpoint at ``receiver`` and a price alert on ``coin`` delivered to it."""
    endpoint = alert_services.endpoint_create(organization_id=org.pk, url=receiver.url)
    alert = alert_services.alert_create(
        organization_id=org.pk,
        endpoint=endpoint,
        coin_id=coin,
        condition={"type": "price", "direction": "above", "level": 5.0},
    )
    return endpoint, alert


def price_form(url: str = "", **extra) -> dict:
    return {
        "coin": "bitcoin",
        "name": "BTC above 100k",
        "type": "price",
        "direction": "above",
        "level": "100000",
        "window": "",
        "indicator": "",
        "timeframe": "",
        "cooldown_seconds": "0",
        "endpoint": "",
        "webhook_url": url,
        **extra,
    }


def test_create_with_a_new_url_shows_the_secret_once_then_lists_the_alert(make_org, login, coin, receiver):
    org = make_org()
    client = login(owner_of(org))
    response = client.post("/portal/alerts", price_form(receiver.url))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get(organization=org)
    assert endpoint.secret in response.content.decode() and "shown only once" in response.content.decode()
    page = client.get("/portal/alerts").content.decode()
    assert "BTC above 100k" in page and "price above 100000 USD" in page and "waiting for a value" in page
    assert endpoint.secret not in page  # never again
    # a second alert to the same endpoint: no secret, back to the list
    again = client.post("/portal/alerts", price_form(endpoint=str(endpoint.pk), name="second"))
    assert again.status_code == 302 and again["Location"].startswith("/portal/alerts?created=")
    assert Alert.objects.filter(organization_id=org.pk).count() == 2


def test_condition_errors_are_the_apis_and_sit_next_to_their_field(make_org, login, coin, receiver):
    client = login(owner_of(make_org()))
    response = client.post("/portal/alerts", price_form(receiver.url, type="change", level="5"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "Required by a change condition" in page and "Request id" in page
    response = client.post(
        "/portal/alerts",
        price_form(receiver.url, type="indicator", indicator="rsi", timeframe="1h", level="170"),
    )
    assert "RSI lies between 0 and 100" in response.content.decode()
    response = client.post("/portal/alerts", price_form("https://10.0.0.1/hook"))
    assert response.status_code == 400 and "Webhook URL refused" in response.content.decode()
    response = client.post("/portal/alerts", price_form(receiver.url, coin="no-such-coin"))
    assert "Unknown coin id" in response.content.decode()
    assert not Alert.objects.exists()
    # the fields of the other types are ignored (the page sends them all)
    ok = client.post("/portal/alerts", price_form(receiver.url, window="1h", timeframe="1h"))
    assert ok.status_code == 200 and Alert.objects.get().window == ""


def test_pause_resume_and_delete_with_confirmation(make_org, login, coin, receiver):
    org = make_org()
    _endpoint, alert = price_alert(org, coin, receiver)
    client = login(owner_of(org))
    assert client.post(f"/portal/alerts/{alert.pk}/pause").status_code == 302
    alert.refresh_from_db()
    assert not alert.active
    assert "paused" in client.get("/portal/alerts").content.decode()
    client.post(f"/portal/alerts/{alert.pk}/resume")
    alert.refresh_from_db()
    assert alert.active
    confirm = client.get(f"/portal/alerts/{alert.pk}/delete", HTTP_HX_REQUEST="true")
    assert "Yes, delete this alert" in confirm.content.decode() and b"<html" not in confirm.content
    assert Alert.objects.filter(pk=alert.pk).exists()  # the GET only asks
    assert client.post(f"/portal/alerts/{alert.pk}/delete").status_code == 302
    assert not Alert.objects.filter(pk=alert.pk).exists()


def test_send_test_and_replay(make_org, login, receiver, django_capture_on_commit_callbacks):
    org = make_org()
    endpoint = alert_services.endpoint_create(organization_id=org.pk, url=receiver.url)
    client = login(owner_of(org))
    panel = client.post(f"/portal/alerts/webhooks/{endpoint.pk}/test", HTTP_HX_REQUEST="true")
    assert panel.status_code == 200
    assert "delivered" in panel.content.decode() and "HTTP 200" in panel.content.decode()
    assert len(receiver.received) == 1
    delivery = Delivery.objects.get()
    page = client.get("/portal/alerts").content.decode()
    assert delivery.event_id in page and "Replay" in page
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/portal/alerts/deliveries/{delivery.pk}/replay")
    assert response.status_code == 302 and len(callbacks) == 1  # queued after commit
    receiver.reply(500)
    failed = client.post(f"/portal/alerts/webhooks/{endpoint.pk}/test", HTTP_HX_REQUEST="true")
    assert "not delivered" in failed.content.decode() and "HTTP 500" in failed.content.decode()


def test_another_organizations_objects_are_404(make_org, login, coin, receiver):
    mine, theirs = make_org(), make_org()
    endpoint, alert = price_alert(theirs, coin, receiver)
    client = login(owner_of(mine))
    assert client.post(f"/portal/alerts/{alert.pk}/delete").status_code == 404
    assert client.post(f"/portal/alerts/{alert.pk}/pause").status_code == 404
    assert client.post(f"/portal/alerts/webhooks/{endpoint.pk}/test").status_code == 404
    assert client.post("/portal/alerts", price_form(endpoint=str(endpoint.pk))).status_code == 400
    assert Alert.objects.filter(pk=alert.pk, active=True).exists() and not receiver.received


def test_roles_what_is_not_allowed_is_not_offered_and_refused(make_org, login, member, coin, receiver):
    org = make_org()
    _endpoint, alert = price_alert(org, coin, receiver)
    accountant = login(member(org, "billing"))
    assert 'href="/portal/alerts"' not in accountant.get("/portal/").content.decode()
    refused = accountant.get("/portal/alerts")
    assert refused.status_code == 403 and "may not do this" in refused.content.decode()
    assert accountant.post("/portal/alerts", price_form(receiver.url)).status_code == 403
    assert accountant.post(f"/portal/alerts/{alert.pk}/delete").status_code == 403
    developer = login(member(org, "developer"))
    page = developer.get("/portal/alerts").content.decode()
    assert 'href="/portal/alerts"' in page and "Create alert" in page and "Send test" in page


def test_the_page_has_no_inline_script(make_org, login, coin):
    client = login(owner_of(make_org()))
    response = client.get("/portal/alerts")
    assert response.status_code == 200
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert b"<script>" not in response.content and b" on" + b"click=" not in response.content
