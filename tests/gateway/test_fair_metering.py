"""Fair metering: credits from the rows actually returned, 304s free, the reservation corrected
exactly — the same number in usage (after the flush) and in the RateLimit month countdown."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apiplatform.gateway import page_credits
from billing import metering
from billing.models import UsageRecord
from tests.api.conftest import api_key, hour0, market  # noqa: F401  (fixtures)
from tests.gateway.conftest import key_client, parse_ratelimit

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway.urls")]


def month_left(response) -> int:
    return parse_ratelimit(response["RateLimit"])["month"]["r"]


def test_page_credits_formula():
    assert [page_credits(n) for n in (0, 1, 999, 1000, 1001, 5000)] == [1, 1, 1, 1, 2, 5]


def test_a_big_limit_returning_one_row_costs_one_credit_and_its_304_nothing(tenant, make_plan, clock):
    plan = make_plan("fair", burst=50, rate_per_minute=600, key_rate_per_minute=600, monthly_credits=1000)
    org, key = tenant("fair")
    client = key_client(key)
    first = client.get("/v1/test/echo?limit=5000&rows=1")  # reserves 5, returns 1 row
    assert first.status_code == 200 and len(first.json()["data"]) == 1
    assert month_left(first) == plan.monthly_credits - 1
    again = client.get("/v1/test/echo?limit=5000&rows=1", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert month_left(again) == plan.monthly_credits - 1  # the revalidation cost nothing
    full = client.get("/v1/test/echo?limit=5000&rows=1500")  # 2 credits of the 5 reserved
    assert month_left(full) == plan.monthly_credits - 3
    metering.usage_flush()
    rows = {r.status_class: (r.requests, r.credits) for r in UsageRecord.objects.filter(organization=org)}
    assert rows == {"2xx": (2, 3), "3xx": (1, 0)}
    limits = client.get("/v1/limits")  # free: the next countdown is the same
    assert month_left(limits) == plan.monthly_credits - 3
    assert limits.json()["quota"]["used"] == sum(c for _n, c in rows.values())


def test_a_declared_cost_never_exceeds_the_reservation(tenant, make_plan, clock):
    plan = make_plan("capped", burst=50, rate_per_minute=600, key_rate_per_minute=600, monthly_credits=1000)
    _org, key = tenant("capped")
    response = key_client(key).get("/v1/test/echo?limit=1000&rows=2500")  # reserved 1, "costs" 3
    assert month_left(response) == plan.monthly_credits - 1


def test_round_trips_only_when_the_cost_differs_from_the_reservation(tenant, make_plan, clock, round_trips):
    make_plan("trips", burst=50, rate_per_minute=600, key_rate_per_minute=600, monthly_credits=1000)
    _org, key = tenant("trips")
    client = key_client(key)
    client.get("/v1/test/echo")  # cold: key and plan loaded
    for query, expected in [
        ("", 1),  # cost known upfront
        ("?limit=2000&rows=1500", 1),  # declared cost == reservation
        ("?limit=5000&rows=1", 2),  # refund: one more round trip
    ]:
        round_trips["n"] = 0
        assert client.get(f"/v1/test/echo{query}").status_code == 200
        assert round_trips["n"] == expected, query


def test_candles_cost_the_rows_returned_and_a_304_is_free(api_key, market, hour0):  # noqa: F811
    client = key_client(api_key)
    start = (hour0 - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    url = f"/v1/coins/bitcoin/candles?timeframe=1h&limit=5000&start={start}"
    first = client.get(url)
    assert first.status_code == 200 and len(first.json()["data"]) == 2
    quota = parse_ratelimit(first["RateLimit-Policy"])["month"]["q"]
    assert month_left(first) == quota - 1
    again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and month_left(again) == quota - 1
    csv = client.get(url + "&format=csv")  # a cache hit: rows counted from the cached body
    assert csv.status_code == 200 and month_left(csv) == quota - 2
    indicator = client.get(f"/v1/coins/bitcoin/indicators/sma?timeframe=1h&limit=5000&start={start}")
    assert indicator.status_code == 200 and month_left(indicator) == quota - 3
    metering.usage_flush()
    used = {
        (r.endpoint, r.status_class): (r.requests, r.credits) for r in UsageRecord.objects.exclude(requests=0)
    }
    assert used == {("candles", "2xx"): (2, 2), ("candles", "3xx"): (1, 0), ("indicators", "2xx"): (1, 1)}
