"""GET /v1/account/usage (JWT) and the OpenAPI documentation of the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services.organizations import organization_create
from accounts.services.sessions import session_start
from billing.models import UsageRecord

pytestmark = pytest.mark.django_db


def jwt_client(user, org=None) -> APIClient:
    client = APIClient()
    extra = {"HTTP_X_ORGANIZATION": org.slug} if org else {}
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}", **extra)
    return client


@pytest.fixture
def orgs(db):
    alice = User.objects.create_user(email="alice@example.test", password="x" * 12)
    bob = User.objects.create_user(email="bob@example.test", password="x" * 12)
    a = organization_create(name="A", owner=alice)
    b = organization_create(name="B", owner=bob)
    rows = [
        (a, "2026-11-01T10:00", "ka", "prices", "2xx", 10, 10),
        (a, "2026-11-01T11:00", "kb", "candles", "2xx", 5, 25),
        (a, "2026-11-01T11:00", "kb", "candles", "4xx", 2, 0),
        (a, "2026-11-02T00:00", "ka", "prices", "2xx", 1, 1),
        (a, "2026-11-05T00:00", "ka", "prices", "2xx", 100, 100),  # outside the asked range
        (b, "2026-11-01T10:00", "kx", "prices", "2xx", 999, 999),  # another tenant
    ]
    for org, hour, key_id, endpoint, cls, n, c in rows:
        UsageRecord.objects.create(
            organization=org,
            hour=datetime.fromisoformat(hour).replace(tzinfo=UTC),
            key_id=key_id,
            endpoint=endpoint,
            status_class=cls,
            requests=n,
            credits=c,
        )
    return {"alice": alice, "bob": bob, "a": a, "b": b, "rows": rows}


def in_range(orgs):
    return [r for r in orgs["rows"] if r[0] == orgs["a"] and r[1] < "2026-11-03"]


@pytest.mark.parametrize("group_by", ["day", "endpoint", "key"])
def test_usage_grouped_and_scoped_to_the_callers_organization(orgs, group_by):
    response = jwt_client(orgs["alice"]).get(
        "/v1/account/usage", {"start": "2026-11-01", "end": "2026-11-02", "group_by": group_by}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    expected_rows = in_range(orgs)
    index = {"day": lambda r: r[1][:10], "endpoint": lambda r: r[3], "key": lambda r: r[2]}[group_by]
    expected: dict[str, list[int]] = {}
    for r in expected_rows:
        acc = expected.setdefault(index(r), [0, 0])
        acc[0] += r[5]
        acc[1] += r[6]
    assert {row[group_by]: [row["requests"], row["credits"]] for row in body["rows"]} == expected
    assert body["totals"] == {
        "requests": sum(r[5] for r in expected_rows),
        "credits": sum(r[6] for r in expected_rows),
    }


def test_usage_rejects_bad_parameters_and_anonymous_callers(orgs):
    client = jwt_client(orgs["alice"])
    assert client.get("/v1/account/usage", {"group_by": "hour"}).status_code == 400
    assert client.get("/v1/account/usage", {"start": "2026-13-01"}).status_code == 400
    assert APIClient().get("/v1/account/usage").status_code == 401


def test_usage_takes_any_range_and_start_after_end_is_empty(orgs):
    client = jwt_client(orgs["alice"])
    reversed_range = client.get("/v1/account/usage", {"start": "2026-11-05", "end": "2026-11-01"})
    assert reversed_range.status_code == 200
    assert reversed_range.json()["rows"] == [] and reversed_range.json()["totals"] == {
        "requests": 0,
        "credits": 0,
    }
    # no limit on the length of the range (it was 366 days), up to the last representable date
    for start, end in (("2000-01-01", "2030-12-31"), ("0001-01-01", "9999-12-31")):
        response = client.get("/v1/account/usage", {"start": start, "end": end, "group_by": "endpoint"})
        assert response.status_code == 200, response.content
        assert response.json()["totals"] == {"requests": 118, "credits": 136}


def test_usage_of_another_organization_is_not_reachable(orgs):
    response = jwt_client(orgs["alice"], orgs["b"]).get("/v1/account/usage")
    assert response.status_code == 404


def test_openapi_ping_and_limits_document_401_and_both_rate_limit_buckets():
    schema = APIClient().get("/v1/schema/?format=json").json()
    for path in ("/v1/ping", "/v1/limits"):
        unauthenticated = schema["paths"][path]["get"]["responses"]["401"]
        assert "application/problem+json" in unauthenticated["content"]
    buckets = schema["components"]["schemas"]["LimitsRateLimits"]
    assert set(buckets["properties"]) == set(buckets["required"]) == {"organization", "key"}


def test_openapi_documents_ratelimit_headers_and_gateway_problems():
    response = APIClient().get("/v1/schema/?format=json")
    assert response.status_code == 200
    limits = response.json()["paths"]["/v1/limits"]["get"]["responses"]
    assert {"RateLimit", "RateLimit-Policy"} <= set(limits["200"]["headers"])
    assert "Retry-After" in limits["429"]["headers"]
    assert "application/problem+json" in limits["429"]["content"]
    operation = response.json()["paths"]["/v1/limits"]["get"]
    assert (operation["x-endpoint-name"], operation["x-credit-cost"]) == ("limits", 0)
