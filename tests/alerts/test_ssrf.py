"""SSRF protection of webhook deliveries (OWASP API7): refused at registration and, whatever was
registered, again at connection time; redirects never followed."""

from __future__ import annotations

import socket

import pytest

from marketdata.alerts import services, transport
from marketdata.alerts.models import Delivery, DeliveryAttempt, WebhookEndpoint

from .conftest import owner_of

pytestmark = pytest.mark.django_db

REFUSED_URLS = [
    "http://127.0.0.1/hook",  # http, and loopback, while development loopback is off
    "https://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.7/hook",
    "https://192.168.1.1/hook",
    "https://172.16.0.1/hook",
    "https://100.64.0.1/hook",  # shared (CGNAT) space
    "https://[::1]/hook",
    "https://[fd00:ec2::254]/hook",  # the IPv6 metadata address
    "https://[::ffff:169.254.169.254]/hook",  # IPv4-mapped
    "https://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "https://0.0.0.0/hook",
    "https://localhost/hook",  # a name resolving to loopback
    "https://2130706433/hook",  # 127.0.0.1 written as a number
    "https://user:pass@hooks.example.com/hook",
    "ftp://hooks.example.com/hook",
    "http://hooks.example.com/hook",  # http to a public name: https only
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_refused_at_registration(url, make_org, jwt_client):
    org = make_org()
    client = jwt_client(owner_of(org))
    response = client.post("/v1/account/webhook-endpoints", {"url": url}, format="json")
    assert response.status_code == 400, (url, response.content)
    assert response.json()["type"].endswith("/webhook-url-refused")
    assert not WebhookEndpoint.objects.exists()


def test_public_https_url_is_accepted_without_calling_it(make_org, jwt_client, monkeypatch):
    monkeypatch.setattr(
        transport.socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))],
    )
    org = make_org()
    response = jwt_client(owner_of(org)).post(
        "/v1/account/webhook-endpoints", {"url": "https://hooks.example.com/x"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["secret"].startswith("whsec_")


def _registered(org, url: str) -> Delivery:
    """An endpoint whose URL got past registration (it resolved elsewhere then, or the setting
    changed since): written directly, as registration would not allow it now."""
    endpoint = WebhookEndpoint.objects.create(organization=org, url=url, secret="whsec_x")
    return services.delivery_send_test(endpoint=endpoint)


def test_loopback_refused_at_connection_time(make_org, receiver, settings):
    settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK = False
    org = make_org()
    https_name = receiver.url.replace("http://127.0.0.1", "https://localhost")  # checked only on connect
    for url in (receiver.url, https_name):
        delivery = _registered(org, url)
        attempt = DeliveryAttempt.objects.get(delivery=delivery)
        assert not attempt.success and attempt.status_code is None
        assert attempt.error.startswith("refused:"), attempt.error
    assert receiver.received == []  # nothing ever reached the loopback server


def test_dns_answer_checked_at_connection_not_only_at_registration(make_org, receiver, settings, monkeypatch):
    """DNS rebinding: the name resolved to a public address when registered, to loopback when
    delivering. The connection is refused: the address connected to is the one checked."""
    settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK = False
    port = int(receiver.url.split(":")[2].split("/")[0])
    answers = iter(["93.184.215.14", "127.0.0.1", "127.0.0.1"])
    monkeypatch.setattr(
        transport.socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))],
    )
    org = make_org()
    endpoint = services.endpoint_create(organization_id=org.pk, url=f"https://rebind.example.com:{port}/h")
    delivery = services.delivery_send_test(endpoint=endpoint)
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert "127.0.0.1 is a loopback address" in attempt.error
    assert receiver.received == []


def test_redirect_to_an_internal_address_is_not_followed(
    make_org, receiver, other_receiver, loopback_allowed
):
    org = make_org()
    receiver.reply((302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""))
    delivery = services.delivery_send_test(
        endpoint=services.endpoint_create(organization_id=org.pk, url=receiver.url)
    )
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.status_code, attempt.success) == (302, False)
    assert "redirect not followed" in attempt.error
    receiver.reply((307, {"Location": other_receiver.url}, b""))  # even to another allowed address
    services.delivery_send_test(endpoint=WebhookEndpoint.objects.get())
    assert other_receiver.received == []


def test_response_reading_is_bounded(make_org, receiver, loopback_allowed, settings):
    settings.ALERTS_WEBHOOK_RESPONSE_BYTES = 1024
    receiver.reply((200, {}, b"x" * 5_000_000))
    org = make_org()
    delivery = services.delivery_send_test(
        endpoint=services.endpoint_create(organization_id=org.pk, url=receiver.url)
    )
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert attempt.success and len(attempt.response_excerpt) == 500


def test_address_rules():
    import ipaddress

    ok = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    refused = ["127.0.0.2", "10.1.2.3", "169.254.0.1", "224.0.0.1", "::", "fe80::1", "2002:a9fe:a9fe::1"]
    for a in ok:
        assert transport.address_refusal(ipaddress.ip_address(a), allow_loopback=False) is None, a
    for a in refused:
        assert transport.address_refusal(ipaddress.ip_address(a), allow_loopback=False), a
    # development loopback opens loopback only, never the rest
    assert transport.address_refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert transport.address_refusal(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)
