"""PublicAPIView end to end (in process): headers, 429s, quota, gating, plan changes, metering."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from billing import gate, metering, services
from billing.limits import US, month_bounds
from billing.models import UsageRecord
from tests.gateway.conftest import key_client, parse_ratelimit
from tests.gateway.urls import Echo

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


def test_limits_endpoint_reports_the_plan_and_counts_down(tenant, plans, clock):
    org, key = tenant()
    client = key_client(key)
    free = plans["free"]
    first = client.get("/v1/limits")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["plan"]["name"] == free.name
    assert body["organization"] == org.slug
    assert body["rate_limits"]["organization"]["remaining"] == free.burst - 1
    assert first["RateLimit-Policy"] == (
        f'"minute";q={free.rate_per_minute};w=60, "key-minute";q={free.key_rate_per_minute};w=60, '
        f'"month";q={free.monthly_credits};w=2592000'
    )
    remaining = [parse_ratelimit(client.get("/v1/limits")["RateLimit"])["minute"]["r"] for _ in range(3)]
    assert remaining == [free.burst - 2, free.burst - 3, free.burst - 4]
    # /v1/limits is free of credits
    assert parse_ratelimit(first["RateLimit"])["month"]["r"] == free.monthly_credits


def test_over_the_limit_is_429_problem_with_retry_after_then_reset(tenant, make_plan, clock):
    plan = make_plan("tiny", rate_per_minute=30, burst=3, key_rate_per_minute=30)
    _org, key = tenant("tiny")
    client = key_client(key)
    codes = [client.get("/v1/test/echo").status_code for _ in range(plan.burst)]
    assert codes == [200] * plan.burst
    refused = client.get("/v1/test/echo")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/problems/rate-limited")
    retry_after = int(refused["Retry-After"])
    assert retry_after == 60 // plan.rate_per_minute
    assert parse_ratelimit(refused["RateLimit"])["minute"]["r"] == 0
    assert "RateLimit-Policy" in refused
    clock["now"] += retry_after * US
    assert client.get("/v1/test/echo").status_code == 200
    assert client.get("/v1/test/echo").status_code == 429


def test_errors_from_the_view_carry_headers_and_are_not_charged(tenant, make_plan, clock):
    make_plan("small", monthly_credits=100, burst=50, rate_per_minute=600, key_rate_per_minute=600)
    _org, key = tenant("small")
    client = key_client(key)
    assert client.get("/v1/test/echo").status_code == 200  # 2 credits
    missing = client.get("/v1/test/echo?status=404")
    assert missing.status_code == 404 and "RateLimit" in missing
    assert client.get("/v1/test/echo?status=400").status_code == 400
    limits = client.get("/v1/limits").json()
    assert limits["quota"]["used"] == 2  # the failed calls were refunded


def test_monthly_quota_exhausted_is_429_with_upgrade_link(tenant, make_plan, clock, settings):
    make_plan("capped", monthly_credits=5, burst=50, rate_per_minute=600, key_rate_per_minute=600)
    _org, key = tenant("capped")
    client = key_client(key)
    assert [client.get("/v1/test/echo").status_code for _ in range(3)] == [200, 200, 429]
    refused = client.get("/v1/test/echo")
    body = refused.json()
    assert body["type"].endswith("/problems/quota-exceeded")
    assert body["upgrade_url"] == settings.BILLING_UPGRADE_URL
    _month, seconds_to_next_month = month_bounds(clock["now"])
    assert int(refused["Retry-After"]) == seconds_to_next_month
    assert parse_ratelimit(refused["RateLimit"])["month"] == {"r": 1, "t": seconds_to_next_month}
    assert client.get("/v1/test/echo?limit=1000").status_code == 200  # 1 credit still fits
    assert client.get("/v1/limits").status_code == 200  # free endpoints keep working


def test_endpoint_and_timeframe_gating_by_plan(tenant, make_plan, plans, clock):
    make_plan("basic", endpoints=["echo"], timeframes=["1h", "1d"], burst=50)
    _org, key = tenant("basic")
    client = key_client(key)
    assert client.get("/v1/test/echo").status_code == 200
    denied = client.get("/v1/test/premium")
    assert denied.status_code == 403
    assert denied.json()["type"].endswith("/problems/plan-upgrade-required")
    assert denied.json()["upgrade_url"]
    assert client.get("/v1/test/echo?tf=1h").status_code == 200
    tf_denied = client.get("/v1/test/echo?tf=1m")
    assert tf_denied.status_code == 403 and tf_denied.json()["timeframe"] == "1m"
    assert "RateLimit" in tf_denied
    # the seeded Free plan has no 1m candles, Developer has
    _o, free_key = tenant("free")
    assert key_client(free_key).get("/v1/test/echo?tf=1m").status_code == 403
    _o, dev_key = tenant("developer")
    assert key_client(dev_key).get("/v1/test/echo?tf=1m").status_code == 200


def test_plan_change_is_effective_on_the_next_request(
    tenant, plans, clock, django_capture_on_commit_callbacks
):
    org, key = tenant()
    client = key_client(key)
    assert client.get("/v1/limits").json()["plan"]["name"] == "free"
    with django_capture_on_commit_callbacks(execute=True):
        services.organization_plan_set(organization=org, plan_name="pro")
    after = client.get("/v1/limits")
    assert after.json()["plan"]["name"] == "pro"
    assert f'"minute";q={plans["pro"].rate_per_minute};w=60' in after["RateLimit-Policy"]
    # an admin edit of the plan itself is also seen at once
    with django_capture_on_commit_callbacks(execute=True):
        services.plan_update(plan=plans["pro"], rate_per_minute=777)
    assert client.get("/v1/limits").json()["rate_limits"]["organization"]["limit"] == 777


def test_set_plan_command(tenant, plans, clock, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    org, key = tenant()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("set_plan", "--org", org.slug, "developer")
    assert key_client(key).get("/v1/limits").json()["plan"]["name"] == "developer"


def test_warm_path_makes_no_sql_query_and_two_redis_round_trips(tenant, clock, round_trips):
    _org, key = tenant()
    client = key_client(key)
    client.get("/v1/limits")  # cold: key and plan loaded and cached
    round_trips["n"] = 0
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/v1/limits")
    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert round_trips["n"] <= 2


def test_metering_counts_every_answer_once_with_exact_credits(tenant, make_plan, clock):
    make_plan("meter", rate_per_minute=6000, burst=8, key_rate_per_minute=6000, monthly_credits=10**6)
    org, key = tenant("meter")
    client = key_client(key)
    plan_calls = ["", "?status=404", "?status=400", "", "?limit=3500", ""] + [""] * 6  # last ones hit 429
    codes = [client.get(f"/v1/test/echo{q}").status_code for q in plan_calls]
    assert APIClient().get("/v1/test/echo").status_code == 401  # unauthenticated
    expected_credits = sum(
        (4 if "limit" in q else 2) for q, c in zip(plan_calls, codes, strict=True) if c == 200
    )
    assert codes.count(429) == len(plan_calls) - 8
    metering.usage_flush()
    rows = UsageRecord.objects.filter(organization=org)
    assert sum(r.requests for r in rows) == len(plan_calls)
    assert sum(r.credits for r in rows) == expected_credits
    by_class: dict[str, int] = {}
    for r in rows:
        by_class[r.status_class] = by_class.get(r.status_class, 0) + r.requests
    assert by_class == {"2xx": codes.count(200), "4xx": len(plan_calls) - codes.count(200)}
    # the gate's refusals are counted with their reason, the other 4xx without one
    by_refusal = {(r.status_class, r.refusal): r.requests for r in rows if r.status_class == "4xx"}
    assert by_refusal == {("4xx", "rate-limited"): codes.count(429), ("4xx", ""): 2}
    anonymous = UsageRecord.objects.get(organization__isnull=True)
    assert (anonymous.requests, anonymous.credits, anonymous.status_class) == (1, 0, "4xx")


def test_server_errors_are_metered_as_5xx_and_refunded(tenant, make_plan, clock):
    make_plan("err", burst=50, rate_per_minute=600, key_rate_per_minute=600)
    org, key = tenant("err")
    client = key_client(key)
    client.raise_request_exception = False
    assert client.get("/v1/test/echo?status=500").status_code == 500
    metering.usage_flush()
    row = UsageRecord.objects.get(organization=org)
    assert (row.status_class, row.requests, row.credits) == ("5xx", 1, 0)
    assert client.get("/v1/limits").json()["quota"]["used"] == 0


def test_gateway_switched_off_adds_nothing(tenant, clock, settings):
    settings.GATEWAY_ENABLED = False
    _org, key = tenant()
    response = key_client(key).get("/v1/test/echo")
    assert response.status_code == 200 and "RateLimit" not in response
    assert not gate._fallback_plans


def test_a_flush_between_gate_and_answer_still_counts_the_final_status(tenant, make_plan, clock):
    make_plan("split", burst=50, rate_per_minute=600, key_rate_per_minute=600)
    org, key = tenant("split")
    client = key_client(key)
    assert client.get("/v1/test/echo?flush=1&status=404").status_code == 404
    assert client.get("/v1/test/echo?flush=1").status_code == 200
    metering.usage_flush()
    rows = {r.status_class: (r.requests, r.credits) for r in UsageRecord.objects.filter(organization=org)}
    assert rows == {"2xx": (1, Echo.credit_cost), "4xx": (1, 0)}
    assert client.get("/v1/limits").json()["quota"]["used"] == Echo.credit_cost


def test_ping_answers_ok_with_limit_headers_and_is_counted_at_no_cost(tenant, plans, clock):
    from datetime import UTC, datetime

    org, key = tenant()
    client = key_client(key)
    free = plans["free"]
    answers = [client.get("/v1/ping") for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    body = answers[0].json()
    assert body["status"] == "ok"
    server_time = datetime.fromisoformat(body["server_time"].replace("Z", "+00:00"))
    assert abs((server_time - datetime.now(UTC)).total_seconds()) < 5
    state = [parse_ratelimit(a["RateLimit"]) for a in answers]
    assert [s["minute"]["r"] for s in state] == [free.burst - 1, free.burst - 2]  # rate limited
    assert state[-1]["month"]["r"] == free.monthly_credits  # free of credits
    assert APIClient().get("/v1/ping").status_code == 401  # a key is needed
    metering.usage_flush()
    row = UsageRecord.objects.get(organization=org, endpoint="ping")
    assert (row.requests, row.credits, row.status_class) == (2, 0, "2xx")
