"""The alerts management API: create/list/get/update/delete, the secret shown once, validation,
roles, and the deliveries list."""

from __future__ import annotations

import functools

import pytest

from marketdata.alerts.models import Alert, WebhookEndpoint

from .conftest import owner_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed", "coin")]


@pytest.fixture
def org(make_org):
    return make_org()


@pytest.fixture
def client(org, jwt_client):
    return jwt_client(owner_of(org))


def price_alert(url: str, **extra) -> dict:
    return {
        "coin": "bitcoin",
        "name": "BTC above 100k",
        "condition": {"type": "price", "direction": "above", "level": 100000},
        "webhook_url": url,
        **extra,
    }


def test_create_with_webhook_url_shows_the_secret_once(client, receiver):
    first = client.post("/v1/account/alerts", price_alert(receiver.url, cooldown_seconds=600), format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    secret = body["webhook_secret"]
    assert secret.startswith("whsec_")
    assert body["condition"] == {"type": "price", "direction": "above", "level": 100000.0}
    assert body["coin"] == "bitcoin" and body["cooldown_seconds"] == 600 and body["active"]
    assert body["state"] == {
        "side": "",
        "value": None,
        "changed_at": None,
        "last_fired_at": None,
        "fired_count": 0,
    }
    second = client.post("/v1/account/alerts", price_alert(receiver.url), format="json").json()
    assert second["webhook_secret"] is None and second["endpoint_id"] == body["endpoint_id"]  # reused
    for path in (
        "/v1/account/webhook-endpoints",
        f"/v1/account/webhook-endpoints/{body['endpoint_id']}",
        "/v1/account/alerts",
        f"/v1/account/alerts/{body['id']}",
    ):
        response = client.get(path)
        assert response.status_code == 200 and secret not in response.content.decode()
        assert response["Cache-Control"] == "no-store"


def test_crud(client, receiver):
    endpoint = client.post("/v1/account/webhook-endpoints", {"url": receiver.url}, format="json").json()
    rsi = {"type": "indicator", "indicator": "rsi", "timeframe": "1h", "direction": "above", "level": 70}
    created = client.post(
        "/v1/account/alerts",
        {"coin": "bitcoin", "condition": rsi, "endpoint_id": endpoint["id"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    alert_id = created.json()["id"]
    assert [a["id"] for a in client.get("/v1/account/alerts").json()] == [alert_id]
    patched = client.patch(
        f"/v1/account/alerts/{alert_id}",
        {
            "active": False,
            "condition": {"type": "change", "window": "24h", "direction": "below", "level": -10},
        },
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["active"] is False
    assert patched.json()["condition"] == {
        "type": "change",
        "window": "24h",
        "direction": "below",
        "level": -10.0,
    }
    in_use = client.delete(f"/v1/account/webhook-endpoints/{endpoint['id']}")
    assert in_use.status_code == 409 and in_use.json()["type"].endswith("/webhook-endpoint-in-use")
    assert client.delete(f"/v1/account/alerts/{alert_id}").status_code == 204
    assert client.get(f"/v1/account/alerts/{alert_id}").status_code == 404
    assert client.delete(f"/v1/account/webhook-endpoints/{endpoint['id']}").status_code == 204


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"coin": "no-such-coin"}, "coin"),
        ({"condition": {"type": "price", "direction": "above"}}, "condition"),
        ({"condition": {"type": "price", "direction": "above", "level": -1}}, "condition"),
        ({"condition": {"type": "change", "direction": "above", "level": 5}}, "condition"),  # no window
        ({"condition": {"type": "change", "window": "7h", "direction": "above", "level": 5}}, "condition"),
        (
            {
                "condition": {
                    "type": "indicator",
                    "indicator": "rsi",
                    "timeframe": "1h",
                    "direction": "above",
                    "level": 170,
                }
            },
            "condition",
        ),
        ({"condition": {"type": "price", "direction": "sideways", "level": 5}}, "condition"),
        ({"condition": {"type": "price", "direction": "above", "level": 5, "extra": 1}}, "condition"),
        ({"condition": {"type": "price", "direction": "above", "level": 10**400}}, "condition"),  # no float
        ({"endpoint_id": 999}, "endpoint_id"),  # both endpoint_id and webhook_url
        ({"cooldown_seconds": -1}, "cooldown_seconds"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_alerts_are_400(client, receiver, body, field):
    response = client.post("/v1/account/alerts", {**price_alert(receiver.url), **body}, format="json")
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    assert field in str(problem.get("errors")), problem
    assert not Alert.objects.exists()


def test_another_organizations_endpoint_cannot_be_used(client, make_org, receiver):
    other = WebhookEndpoint.objects.create(organization=make_org(), url=receiver.url, secret="whsec_o")
    body = {**price_alert(receiver.url), "endpoint_id": other.pk}
    del body["webhook_url"]
    response = client.post("/v1/account/alerts", body, format="json")
    assert response.status_code == 400 and "endpoint_id" in str(response.json()["errors"])


def test_limit_per_organization(client, receiver, settings):
    settings.ALERTS_MAX_PER_ORGANIZATION = 2
    codes = [
        client.post("/v1/account/alerts", price_alert(receiver.url), format="json").status_code
        for _ in range(3)
    ]
    assert codes == [201, 201, 409]


def test_billing_role_cannot_read_alerts(org, make_member, jwt_client):
    billing = jwt_client(make_member(org, "billing"))
    response = billing.get("/v1/account/alerts")
    assert response.status_code == 403 and response.json()["type"].endswith("/role-forbidden")
    developer = jwt_client(make_member(org, "developer"))
    assert developer.get("/v1/account/alerts").status_code == 200


def test_deliveries_list_filters_and_pages(client, org, receiver):
    endpoint = client.post("/v1/account/webhook-endpoints", {"url": receiver.url}, format="json").json()
    receiver.reply(200, 500, 200)
    for _ in range(3):
        client.post(f"/v1/account/webhook-endpoints/{endpoint['id']}/test")
    page = client.get("/v1/account/deliveries?limit=2").json()
    assert [d["status"] for d in page["results"]] == ["succeeded", "failed"]
    rest = client.get(f"/v1/account/deliveries?limit=2&before={page['next_before']}").json()
    assert [d["status"] for d in rest["results"]] == ["succeeded"] and rest["next_before"] is None
    failed = client.get("/v1/account/deliveries?status=failed").json()["results"]
    assert len(failed) == 1
    assert client.get("/v1/account/deliveries?color=red").status_code == 400


IND = {"type": "indicator", "direction": "above"}
CONDITIONS = [  # (condition, accepted)
    ({"type": "price", "direction": "above", "level": 100000}, True),
    ({"type": "price", "direction": "below", "level": 0}, False),
    ({"type": "price", "direction": "above"}, False),
    ({"type": "price", "direction": "above", "level": 5, "window": "1h"}, False),
    ({"type": "change", "window": "1h", "direction": "below", "level": -5}, True),
    ({"type": "change", "direction": "above", "level": 5}, False),
    ({**IND, "indicator": "rsi", "timeframe": "1h", "level": 70}, True),
    ({**IND, "indicator": "rsi", "timeframe": "1h", "level": 100}, False),
    ({**IND, "indicator": "rsi", "timeframe": "1h"}, False),
    ({**IND, "indicator": "macd", "timeframe": "4h", "direction": "below", "level": -2.5}, True),
    ({**IND, "indicator": "macd_signal_cross", "timeframe": "1d"}, True),
    ({**IND, "indicator": "macd_signal_cross", "timeframe": "1d", "level": 0}, True),
    ({**IND, "indicator": "macd_signal_cross", "timeframe": "1d", "level": 1}, False),
    ({**IND, "indicator": "rsi", "level": 30}, False),  # no timeframe
    ({**IND, "indicator": "rsi", "timeframe": "1h", "level": 30, "window": "1h"}, False),
]  # fmt: skip


@functools.cache
def _openapi() -> dict:
    from django.test import Client

    return Client().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


@pytest.mark.parametrize(("condition", "accepted"), CONDITIONS)
def test_condition_schema_says_what_the_api_accepts(client, receiver, condition, accepted):
    """The OpenAPI condition (a oneOf by type) and the API's validation agree, both ways."""
    import jsonschema

    document = _openapi()
    alert_in = document["components"]["schemas"]["AlertInRequest"]["properties"]["condition"]
    assert alert_in == {"$ref": "#/components/schemas/AlertConditionRequest"}
    condition_schema = document["components"]["schemas"]["AlertConditionRequest"]
    assert condition_schema["discriminator"]["propertyName"] == "type"
    assert set(condition_schema["discriminator"]["mapping"]) == {"price", "change", "indicator"}
    # OpenAPI 3.0 schemas are JSON Schema draft 4 (boolean exclusiveMinimum) plus keywords it ignores
    validator = jsonschema.Draft4Validator({**alert_in, "components": document["components"]})
    assert validator.is_valid(condition) is accepted
    response = client.post(
        "/v1/account/alerts", price_alert(receiver.url, condition=condition), format="json"
    )
    assert response.status_code == (201 if accepted else 400), response.content
    if accepted:
        answered = response.json()["condition"]
        out = jsonschema.Draft4Validator(
            {"$ref": "#/components/schemas/AlertCondition", "components": document["components"]}
        )
        assert out.is_valid(answered), answered
