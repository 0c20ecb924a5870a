"""The per-client-IP budget of failed API-key authentications (accounts/failures.py): 429
auth-rate-limited before any key lookup, valid keys in use unaffected, fail open without the cache."""

from __future__ import annotations

import logging
from datetime import timedelta

import django_ratelimit.core
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import failures, keycache, keyformat
from accounts.models import ApiKey
from accounts.services.api_keys import api_key_revoke
from apiplatform import redis_access
from billing import metering
from billing.models import UsageRecord

pytestmark = pytest.mark.urls("tests.accounts.public_urls")
URL = "/v1/test/whoami"
BUDGET = 5
ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"


class Clock:
    """Stands in for the ``time`` module of django-ratelimit, accounts.failures and
    apiplatform.redis_access: wall time (the fixed windows) and monotonic time (the fail-open
    back-off) only move when a test says so."""

    def __init__(self):
        self.now = 1_790_000_000.0
        self.mono = 1_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(django_ratelimit.core, "time", clock)
    monkeypatch.setattr(failures, "time", clock)
    monkeypatch.setattr(redis_access, "time", clock)
    return clock


@pytest.fixture(autouse=True)
def _budget(settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "API_KEY_FAILURES_PER_MINUTE": BUDGET}


@pytest.fixture
def lookups(monkeypatch):
    """Key ids :func:`accounts.keycache.lookup` was asked for (cache hits included)."""
    seen: list[str] = []
    original = keycache.lookup

    def counting(key_id):
        seen.append(key_id)
        return original(key_id)

    monkeypatch.setattr(keycache, "lookup", counting)
    return seen


@pytest.fixture
def usage_calls(monkeypatch):
    """How often the shared failure counter (django-ratelimit) was touched."""
    calls = {"n": 0}
    original = failures.get_usage

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(failures, "get_usage", counting)
    return calls


def call(key: str | None, ip: str = ATTACKER, **extra):
    if key is not None:
        extra["HTTP_X_API_KEY"] = key
    return APIClient().get(URL, REMOTE_ADDR=ip, **extra)


def forged() -> str:
    """Well-formed, valid checksum, unknown key id: free to make, a cold lookup to answer."""
    return keyformat.generate_key("live")[1]


def slug(response) -> str:
    assert response["Content-Type"].startswith("application/problem+json"), response.content
    return response.json()["type"].rsplit("/", 1)[-1]


def use_up_budget(ip: str = ATTACKER) -> None:
    for _ in range(BUDGET):
        response = call(forged(), ip)
        assert (response.status_code, slug(response)) == (401, "api-key-unknown")


def assert_auth_rate_limited(response) -> int:
    assert response.status_code == 429, response.content
    assert slug(response) == "auth-rate-limited"
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.json()["retry_after"] == retry_after
    # No organization: no plan's RateLimit fields, and nothing to authenticate again with.
    assert "RateLimit" not in response and "RateLimit-Policy" not in response
    assert "WWW-Authenticate" not in response
    return retry_after


@pytest.mark.django_db
def test_over_budget_ip_is_refused_without_any_query_or_key_lookup(clock, lookups):
    use_up_budget()
    assert len(lookups) == BUDGET
    with CaptureQueriesContext(connection) as queries:
        response = call(forged())
    assert_auth_rate_limited(response)
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert len(lookups) == BUDGET  # no Redis GET, no database, no SET for the forged id


@pytest.mark.django_db
def test_malformed_keys_and_non_bearer_headers_count_too(clock, usage_calls):
    for _ in range(BUDGET - 1):
        response = call("hello")
        assert (response.status_code, slug(response)) == (401, "api-key-malformed")
    response = APIClient().get(URL, REMOTE_ADDR=ATTACKER, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert (response.status_code, slug(response)) == (401, "api-key-malformed")
    assert usage_calls["n"] == BUDGET
    assert_auth_rate_limited(call("hello"))  # beyond the budget: refused even though no lookup
    assert_auth_rate_limited(call(forged()))
    assert usage_calls["n"] == BUDGET  # known over budget: the shared counter is left alone


def test_missing_revoked_expired_and_ip_refused_keys_do_not_count(clock, make_org, make_key):
    org = make_org()
    revoked, revoked_full = make_key(org)
    api_key_revoke(api_key=revoked)
    expired, expired_full = make_key(org)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _fenced, fenced_full = make_key(org, allowed_ips=["192.0.2.0/24"])
    for _ in range(BUDGET + 2):
        assert slug(call(None)) == "api-key-missing"
        assert slug(call(revoked_full)) == "api-key-revoked"
        assert slug(call(expired_full)) == "api-key-expired"
        assert slug(call(fenced_full)) == "api-key-ip-not-allowed"
    response = call(forged())  # the budget is untouched
    assert (response.status_code, slug(response)) == (401, "api-key-unknown")


def test_keys_in_use_from_a_blocked_ip_keep_working_other_ips_are_unaffected(
    clock, make_org, make_key, django_assert_num_queries, usage_calls
):
    org = make_org()
    in_use, in_use_full = make_key(org)
    _never_seen, never_seen_full = make_key(org)
    assert call(in_use_full).status_code == 200  # known to this process from now on
    use_up_budget()
    usage_calls["n"] = 0

    with django_assert_num_queries(0):  # warm: exactly the old warm path
        assert call(in_use_full).status_code == 200
    assert usage_calls["n"] == 0  # and no look at the failure counter either

    entry = keycache._local[in_use.key_id][1]
    keycache._local[in_use.key_id] = (0.0, entry)  # past its local TTL: the next request refreshes it
    assert call(in_use_full).status_code == 200

    # A valid key this process has not served cannot be told from a forged one without the lookup
    # the budget exists to avoid: refused from the blocked IP until the window ends...
    assert_auth_rate_limited(call(never_seen_full))
    # ...but not from anywhere else, nor are other IPs' unknown keys refused.
    assert call(never_seen_full, NEIGHBOUR).status_code == 200
    response = call(forged(), NEIGHBOUR)
    assert (response.status_code, slug(response)) == (401, "api-key-unknown")


@pytest.mark.django_db
def test_the_ip_may_try_again_when_the_window_ends(clock):
    use_up_budget()
    retry_after = assert_auth_rate_limited(call(forged()))
    clock.advance(retry_after - 1)
    assert_auth_rate_limited(call(forged()))  # one second before the end: still refused
    clock.advance(1)
    use_up_budget()  # a whole new budget
    assert_auth_rate_limited(call(forged()))


@pytest.mark.django_db
def test_a_process_that_has_not_seen_the_failures_learns_from_its_first_one(clock, lookups):
    use_up_budget()
    failures.clear()  # as if the next requests reached another web process
    assert_auth_rate_limited(call(forged()))  # its own increment says: beyond the budget
    assert len(lookups) == BUDGET + 1  # that one request was looked up
    assert_auth_rate_limited(call(forged()))
    assert len(lookups) == BUDGET + 1  # the next one is not


@pytest.mark.django_db
def test_the_refusals_are_metered_as_unauthenticated_4xx():
    use_up_budget()
    assert_auth_rate_limited(call(forged()))
    metering.usage_flush()
    rows = list(UsageRecord.objects.all())
    assert {(r.organization_id, r.key_id, r.status_class) for r in rows} == {(None, "", "4xx")}
    assert sum(r.requests for r in rows) == BUDGET + 1
    assert sum(r.credits for r in rows) == 0


def test_cache_down_fails_open_and_warns_once(
    clock, settings, closed_port, make_org, make_key, caplog, usage_calls
):
    _api_key, full = make_key(make_org())
    healthy_caches = settings.CACHES
    down = f"redis://127.0.0.1:{closed_port}/0"
    settings.CACHES = {"default": {**healthy_caches["default"], "LOCATION": down}}
    settings.REDIS_URL = down  # the key cache's Redis too: lookups read PostgreSQL
    caplog.set_level(logging.INFO, logger="apiplatform.redis_access")
    for _ in range(BUDGET + 3):
        response = call(forged())
        assert (response.status_code, slug(response)) == (401, "api-key-unknown")
    assert call(full).status_code == 200
    warnings = [  # the failure counter's (the key cache's Redis is down too: it warns for itself)
        r
        for r in caplog.records
        if r.name == "apiplatform.redis_access"
        and r.levelno == logging.WARNING
        and "(cache)" in r.getMessage()
    ]
    assert len(warnings) == 1, caplog.text
    assert usage_calls["n"] == 1  # backed off: not one connection attempt per failure

    settings.CACHES = healthy_caches
    clock.advance(settings.REDIS_BACKOFF_SECONDS)
    use_up_budget()  # counting again...
    assert_auth_rate_limited(call(forged()))  # ...and enforcing
    assert "reachable again" in caplog.text


@pytest.mark.django_db
def test_clients_behind_trusted_proxies_have_budgets_of_their_own(clock, settings):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "TRUSTED_PROXY_DEPTH": 1}
    proxy = "10.0.0.2"
    for _ in range(BUDGET):
        assert call(forged(), proxy, HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 401
    assert_auth_rate_limited(call(forged(), proxy, HTTP_X_FORWARDED_FOR=ATTACKER))
    response = call(forged(), proxy, HTTP_X_FORWARDED_FOR=NEIGHBOUR)
    assert (response.status_code, slug(response)) == (401, "api-key-unknown")


@pytest.mark.django_db
def test_ipv6_clients_share_a_budget_per_64(clock):
    use_up_budget("2001:db8:1:2::1")
    assert_auth_rate_limited(call(forged(), "2001:db8:1:2:ffff::9"))  # same /64
    assert call(forged(), "2001:db8:1:3::1").status_code == 401  # another /64


@pytest.mark.django_db
def test_zero_switches_the_budget_off(clock, settings, usage_calls):
    settings.ACCOUNTS = {**settings.ACCOUNTS, "API_KEY_FAILURES_PER_MINUTE": 0}
    for _ in range(3 * BUDGET):
        assert call(forged()).status_code == 401
    assert usage_calls["n"] == 0


def test_blocked_for_forgets_an_ended_window(clock):
    failures._blocked["192.0.2.1"] = int(clock.now) + 4
    assert failures.blocked_for("192.0.2.1") == 5
    clock.advance(5)
    assert failures.blocked_for("192.0.2.1") is None
    assert "192.0.2.1" not in failures._blocked


@pytest.mark.django_db
def test_ended_windows_are_swept_out_of_the_memo(clock):
    use_up_budget(ATTACKER)
    assert failures.blocked_for(ATTACKER) is not None
    clock.advance(120)
    use_up_budget(NEIGHBOUR)  # a new entry: the sweep drops the attacker's ended window
    assert set(failures._blocked) == {NEIGHBOUR}
