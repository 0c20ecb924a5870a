"""The organization's last failed calls (issue 15's dashboard table, GET /v1/account/usage/failures):
kept in a capped Redis list by calls the failure path makes anyway, never by a successful call."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, User
from accounts.services.api_keys import api_key_create
from accounts.services.memberships import membership_add
from accounts.services.sessions import session_start
from apiplatform import redis_access
from billing import selectors
from billing.redis_layout import FAILURES_KEPT, failures_key
from tests.gateway.conftest import key_client

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


@pytest.fixture
def fresh(tenant):
    """A tenant whose failed-calls list starts empty (organization ids repeat across test databases)."""

    def make(plan_name: str | None = None):
        org, key = tenant(plan_name)
        redis_access.client("gateway").delete(failures_key(org.pk))
        return org, key

    return make


def stored(org) -> list[str]:
    return redis_access.client("gateway").lrange(failures_key(org.pk), 0, -1)


def test_a_refused_call_is_kept_with_status_path_key_and_request_id(fresh, make_plan, clock):
    make_plan("tight", rate_per_minute=60, burst=1, key_rate_per_minute=60)
    org, key = fresh("tight")
    client = key_client(key)
    assert client.get("/v1/test/echo?n=1").status_code == 200
    refused = client.get("/v1/test/echo?n=2", HTTP_X_REQUEST_ID="req-refused-1")
    assert refused.status_code == 429
    rows = selectors.usage_failures(organization_id=org.pk)
    assert rows is not None and len(rows) == 1
    row = rows[0]
    api_key = ApiKey.objects.get(organization=org)
    assert (row.status, row.problem, row.path, row.request_id) == (
        429, "rate-limited", "/v1/test/echo?n=2", "req-refused-1",
    )  # fmt: skip
    assert (row.key_id, row.key_name, row.key_prefix) == (api_key.key_id, api_key.name, api_key.prefix)
    assert key not in "".join(stored(org))  # the secret is never stored


def test_a_successful_call_adds_nothing_and_no_round_trip(fresh, clock, round_trips):
    org, key = fresh()
    client = key_client(key)
    client.get("/v1/test/echo")  # cold: key and plan loaded
    round_trips["n"] = 0
    for _ in range(3):
        assert client.get("/v1/test/echo").status_code == 200
    assert round_trips["n"] == 3  # the gate's one call each, nothing more
    assert stored(org) == []


def test_errors_after_admission_and_before_the_gate_are_kept(fresh, make_plan, clock):
    make_plan("roomy", rate_per_minute=6000, burst=50, key_rate_per_minute=6000, timeframes=["1h"])
    org, key = fresh("roomy")
    client = key_client(key)
    client.raise_request_exception = False
    assert client.get("/v1/test/echo?status=404").status_code == 404
    assert client.get("/v1/test/echo?status=500").status_code == 500
    assert client.get("/v1/test/echo?tf=1m").status_code == 403  # plan gating inside the view
    assert client.get("/v1/test/echo?rows=10").status_code == 200  # a cheaper success: corrected, not kept
    # refused before the gate: a key without the market-data scope
    narrow_row, narrow = api_key_create(organization=org, name="narrow", audit=False)
    ApiKey.objects.filter(pk=narrow_row.pk).update(scopes=[])  # no scope grants market data
    assert key_client(narrow).get("/v1/test/echo").status_code == 403
    assert APIClient().get("/v1/test/echo").status_code == 401  # no key: nobody's failure
    rows = selectors.usage_failures(organization_id=org.pk)
    assert [(r.status, r.problem) for r in rows] == [
        (403, "api-key-insufficient-scope"),
        (403, "plan-upgrade-required"),
        (500, "server-error"),
        (404, "not-found"),
    ]
    assert rows[0].key_name == "narrow"


def test_the_list_is_capped_at_the_newest(fresh, make_plan, clock):
    make_plan("one", rate_per_minute=1, burst=1, key_rate_per_minute=1)
    org, key = fresh("one")
    client = key_client(key)
    client.get("/v1/test/echo")
    for i in range(FAILURES_KEPT + 5):
        assert client.get(f"/v1/test/echo?i={i}").status_code == 429
    rows = selectors.usage_failures(organization_id=org.pk)
    assert len(rows) == FAILURES_KEPT
    assert rows[0].path == f"/v1/test/echo?i={FAILURES_KEPT + 4}"  # newest first
    assert rows[-1].path == "/v1/test/echo?i=5"  # the 5 oldest fell off


def test_failures_are_per_organization_and_the_api_shows_only_the_callers(fresh, make_plan, clock):
    make_plan("tight", rate_per_minute=60, burst=1, key_rate_per_minute=60)
    a, key_a = fresh("tight")
    b, key_b = fresh("tight")
    for key, path in ((key_a, "/v1/test/echo?who=a"), (key_b, "/v1/test/echo?who=b")):
        client = key_client(key)
        client.get(path)
        assert client.get(path).status_code == 429
    assert [r.path for r in selectors.usage_failures(organization_id=a.pk)] == ["/v1/test/echo?who=a"]
    user = User.objects.create_user(email="owner-a@example.test", password="x" * 12)
    membership_add(organization=a, user=user, role="owner", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {session_start(user=user).access}")
    response = client.get("/v1/account/usage/failures")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["organization"] == a.slug
    assert [(f["status"], f["problem"], f["path"]) for f in body["failures"]] == [
        (429, "rate-limited", "/v1/test/echo?who=a")
    ]
    assert set(body["failures"][0]["key"]) == {"id", "name", "prefix"}
    # the other organization's list is not reachable by naming it
    other = client.get("/v1/account/usage/failures", HTTP_X_ORGANIZATION=b.slug)
    assert other.status_code == 404


def test_quota_refusal_is_kept_as_quota_exceeded(fresh, make_plan, clock):
    make_plan("small", rate_per_minute=6000, burst=50, key_rate_per_minute=6000, monthly_credits=2)
    org, key = fresh("small")
    client = key_client(key)
    assert client.get("/v1/test/echo").status_code == 200  # 2 credits
    assert client.get("/v1/test/echo").status_code == 429
    [row] = selectors.usage_failures(organization_id=org.pk)
    assert (row.status, row.problem) == (429, "quota-exceeded")


def test_with_redis_down_the_list_is_unavailable_not_an_error(fresh, settings, closed_port):
    org, _key = fresh()
    settings.GATEWAY_REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    redis_access.reset_all()
    assert selectors.usage_failures(organization_id=org.pk) is None
