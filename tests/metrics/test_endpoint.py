"""GET /metrics in one process: access control, route-template labels, gateway outcomes, and that a
scrape is neither metered nor rate-limited."""

from __future__ import annotations

import pytest

from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import metering, services
from billing.models import Plan, UsageRecord
from tests.gateway.conftest import ensure_seeded_plans
from tests.metrics.conftest import TOKEN, samples, value

pytestmark = pytest.mark.django_db

REQUESTS = "candlestack_http_requests_total"


def test_refused_without_the_token_or_an_allowed_address(client, metrics_settings):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["Content-Type"] == "application/problem+json"
    assert anonymous.json()["type"].endswith("/problems/not-authenticated")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain; version=0.0.4")  # what Prometheus 2 reads
    assert b"candlestack_metrics_collector_up" in ok.content


def test_an_allowed_address_needs_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16", "::1"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.200.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    # nothing configured: nobody, not even with an (empty) bearer
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics", REMOTE_ADDR="10.1.200.3", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_requests_are_labelled_by_route_template_never_by_raw_path(client, scrape):
    before = scrape()
    for coin in ("raw-coin-aaa", "raw-coin-bbb", "raw-coin-ccc"):
        assert client.get(f"/v1/coins/{coin}/candles").status_code == 401  # no key: refused, still counted
    assert client.get("/no/such/raw-path-123").status_code == 404
    assert client.post("/v1/coins/raw-coin-aaa").status_code == 401
    text_after = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    after = samples(text_after)
    template = "/v1/coins/<str:coin_id>/candles"
    delta = value(after, REQUESTS, route=template, method="GET", status_class="4xx") - value(
        before, REQUESTS, route=template, method="GET", status_class="4xx"
    )
    assert delta == 3
    unmatched = {"route": "<unmatched>", "method": "GET", "status_class": "4xx"}
    assert value(after, REQUESTS, **unmatched) - value(before, REQUESTS, **unmatched) == 1
    post = {"route": "/v1/coins/<str:coin_id>", "method": "POST", "status_class": "4xx"}
    assert value(after, REQUESTS, **post) - value(before, REQUESTS, **post) == 1
    hist = {"route": template, "method": "GET", "status_class": "4xx", "le": "+Inf"}
    assert value(after, "candlestack_http_request_duration_seconds_bucket", **hist) == value(
        after, REQUESTS, route=template, method="GET", status_class="4xx"
    )
    assert "raw-coin" not in text_after and "raw-path" not in text_after


@pytest.fixture
def burst_tenant(db):
    ensure_seeded_plans()
    Plan.objects.update_or_create(
        name="metrics-burst",
        defaults={
            "display_name": "Metrics burst",
            "rate_per_minute": 1,
            "burst": 2,
            "key_rate_per_minute": 60,
            "monthly_credits": 1000,
            "endpoints": ["*"],
            "timeframes": ["*"],
        },
    )
    org = organization_create(name="Metrics Org")
    _row, key = api_key_create(organization=org, name="k", audit=False)
    services.organization_plan_set(organization=org, plan_name="metrics-burst")
    return org, key


def test_gateway_decisions_are_counted_by_plan_and_outcome(client, scrape, burst_tenant, settings):
    settings.ROOT_URLCONF = "tests.gateway.urls"
    _org, key = burst_tenant
    before = scrape()
    statuses = [client.get("/v1/test/echo", HTTP_X_API_KEY=key).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    after = scrape()
    name = "candlestack_gateway_decisions_total"
    for outcome, expected in (("admitted", 2), ("rate_limited", 3), ("quota_exceeded", 0)):
        labels = {"plan": "metrics-burst", "outcome": outcome, "degraded": "false"}
        assert value(after, name, **labels) - value(before, name, **labels) == expected, outcome


def test_a_scrape_is_neither_metered_nor_rate_limited(client, scrape, burst_tenant, settings):
    settings.ROOT_URLCONF = "tests.gateway.urls"
    org, key = burst_tenant
    assert client.get("/v1/test/echo", HTTP_X_API_KEY=key).status_code == 200
    metering.usage_flush()
    usage_before = list(UsageRecord.objects.filter(organization=org).values_list("requests", "credits"))
    assert sum(r for r, _ in usage_before) == 1
    for _ in range(10):  # far beyond the plan's burst of 2, with the tenant's key on the scrape
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_X_API_KEY=key)
        assert response.status_code == 200
        assert "RateLimit" not in response
    metering.usage_flush()
    usage_after = list(UsageRecord.objects.filter(organization=org).values_list("requests", "credits"))
    assert usage_after == usage_before
    # and the tenant's own budget was not touched by the scrapes: one more call is admitted
    assert client.get("/v1/test/echo", HTTP_X_API_KEY=key).status_code == 200


def test_a_source_that_is_down_is_reported_and_the_rest_is_served(client, scrape, settings, closed_port):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"  # the broker is down
    scraped = scrape()
    up = "candlestack_metrics_collector_up"
    assert value(scraped, up, collector="queues") == 0
    assert value(scraped, up, collector="ingestion") == 1 and value(scraped, up, collector="jobs") == 1
    assert not any(name == "candlestack_celery_queue_depth" for name, _ in scraped)
    assert ("candlestack_ingestion_bucket_seconds", frozenset({("timeframe", "1m")})) in scraped


def test_behind_a_proxy_the_allow_list_sees_the_forwarded_client(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    settings.ACCOUNTS = {**settings.ACCOUNTS, "TRUSTED_PROXY_DEPTH": 1}  # the nginx of deploy/
    via_proxy = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.0.0.7", **via_proxy).status_code == 200
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9", **via_proxy).status_code == 401
    # a client cannot smuggle an allowed address in front of its own
    spoofed = client.get("/metrics", HTTP_X_FORWARDED_FOR="10.0.0.7, 203.0.113.9", **via_proxy)
    assert spoofed.status_code == 401


def test_decisions_of_the_fallback_while_redis_is_down_are_marked_degraded(
    client, scrape, burst_tenant, settings, closed_port
):
    from billing import gate

    settings.ROOT_URLCONF = "tests.gateway.urls"
    _org, key = burst_tenant
    before = scrape()
    settings.GATEWAY_REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    gate.reset()
    statuses = [client.get("/v1/test/echo", HTTP_X_API_KEY=key).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the plan's burst of 2, held by the per-process limiter
    after = scrape()
    name = "candlestack_gateway_decisions_total"
    for outcome, expected in (("admitted", 2), ("rate_limited", 1)):
        degraded = {"plan": "metrics-burst", "outcome": outcome, "degraded": "true"}
        normal = {"plan": "metrics-burst", "outcome": outcome, "degraded": "false"}
        assert value(after, name, **degraded) - value(before, name, **degraded) == expected
        assert value(after, name, **normal) == value(before, name, **normal)
