"""The Lua GCRA gate: exact counts, countdown, reset, quota, gating, plan versions, processes."""

from __future__ import annotations

import multiprocessing

import pytest

from apiplatform import redis_access
from billing import gate as billing_gate
from billing.limits import ADMITTED, ENDPOINT_NOT_IN_PLAN, QUOTA_EXCEEDED, RATE_LIMITED, US, PlanLimits
from billing.plan_cache import publish_plan
from billing.redis_layout import plan_key

NOW = 1_790_000_000 * US  # a fixed instant (2026-09-21); time only moves when a test moves it


def limits(**overrides) -> PlanLimits:
    values = {
        "name": "t",
        "display_name": "Test",
        "version": 1,
        "rate_per_minute": 60,
        "burst": 5,
        "key_rate_per_minute": 60,
        "monthly_credits": 1000,
        "endpoints": "*",
        "timeframes": "*",
    }
    values.update(overrides)
    return PlanLimits(**values)


@pytest.fixture(autouse=True)
def _fresh_client():
    billing_gate.reset()
    yield
    billing_gate.reset()


def gate(org=1, key="k1", endpoint="prices", cost=1, now=NOW):
    return billing_gate.check(organization_id=org, key_id=key, endpoint=endpoint, cost=cost, now=now)


def test_unknown_organization_needs_its_plan_published():
    assert gate() is None
    publish_plan(1, limits())
    assert gate().status == ADMITTED


def test_burst_is_admitted_then_refused_with_countdown_and_retry_after():
    plan = limits(rate_per_minute=60, burst=5)
    publish_plan(1, plan)
    seen = [gate() for _ in range(plan.burst + 1)]
    assert [r.status for r in seen] == [ADMITTED] * plan.burst + [RATE_LIMITED]
    assert [r.tenant_remaining for r in seen[:-1]] == list(range(plan.burst - 1, -1, -1))
    interval_s = 60 / plan.rate_per_minute
    # after n admissions the bucket is full again n emission intervals later
    assert [r.tenant_reset_s for r in seen[:-1]] == [round(interval_s * (i + 1)) for i in range(plan.burst)]
    assert seen[-1].retry_after_s == round(interval_s)
    assert seen[-1].tenant_remaining == 0


def test_reset_is_honoured_with_the_injected_clock():
    plan = limits(rate_per_minute=30, burst=3)  # one request every 2 s
    publish_plan(1, plan)
    for _ in range(plan.burst):
        assert gate().status == ADMITTED
    refused = gate()
    assert refused.status == RATE_LIMITED
    wait_us = refused.retry_after_s * US
    assert gate(now=NOW + wait_us - 1).status == RATE_LIMITED
    assert gate(now=NOW + wait_us).status == ADMITTED
    assert gate(now=NOW + wait_us).status == RATE_LIMITED
    # a full minute later the whole burst is available again, not more
    later = NOW + 120 * US
    assert [gate(now=later).status for _ in range(plan.burst + 1)].count(ADMITTED) == plan.burst


def test_no_double_limit_across_a_window_edge():
    """Fixed windows admit 2x the limit around a minute boundary; the bucket does not."""
    plan = limits(rate_per_minute=60, burst=60)
    publish_plan(1, plan)
    edge = (NOW // (60 * US) + 1) * 60 * US
    admitted = sum(gate(now=edge - US // 2).status == ADMITTED for _ in range(100))
    admitted += sum(gate(now=edge + US // 2).status == ADMITTED for _ in range(100))
    assert admitted == plan.burst + 1  # one more emission interval (1 s) elapsed


def test_key_limit_and_organization_limit_both_apply():
    plan = limits(rate_per_minute=60, burst=4, key_rate_per_minute=6)
    publish_plan(1, plan)
    # a key's bucket has the plan's burst but refills at its own rate
    first = [gate(key="a").status for _ in range(plan.burst)]
    assert first == [ADMITTED] * plan.burst
    # organization bucket is now empty too: another key is refused
    assert gate(key="b").status == RATE_LIMITED
    one_second = NOW + US  # organization refills 1/s, key "a" only every 10 s
    assert gate(key="a", now=one_second).status == RATE_LIMITED
    assert gate(key="b", now=one_second).status == ADMITTED


def test_refused_request_consumes_nothing():
    plan = limits(rate_per_minute=60, burst=2, monthly_credits=10)
    publish_plan(1, plan)
    gate(cost=3)
    gate(cost=3)
    refused = gate(cost=3)
    assert refused.status == RATE_LIMITED
    assert refused.credits_used == 6


def test_monthly_quota_is_exact_and_cost_weighted():
    plan = limits(rate_per_minute=6000, burst=100, key_rate_per_minute=6000, monthly_credits=10)
    publish_plan(1, plan)
    results = [gate(cost=3) for _ in range(5)]
    assert [r.status for r in results] == [ADMITTED] * 3 + [QUOTA_EXCEEDED] * 2
    assert results[2].credits_used == 9 and results[2].credits_remaining == 1
    assert gate(cost=1).status == ADMITTED  # exactly the last credit
    assert gate(cost=1).status == QUOTA_EXCEEDED
    assert gate(cost=0).status == ADMITTED  # free endpoints keep working (e.g. /v1/limits)
    refused = gate(cost=1)
    assert refused.month_reset_s > 0
    next_month = NOW + refused.month_reset_s * US
    assert gate(cost=1, now=next_month).status == ADMITTED


def test_endpoint_gating():
    publish_plan(1, limits(endpoints="prices,coins"))
    assert gate(endpoint="prices").status == ADMITTED
    assert gate(endpoint="indicators").status == ENDPOINT_NOT_IN_PLAN
    assert gate(endpoint="price").status == ENDPOINT_NOT_IN_PLAN  # whole names only
    assert gate(endpoint="").status == ADMITTED  # ungated endpoints


def test_newer_plan_version_wins_and_older_is_ignored():
    publish_plan(1, limits(version=10, burst=1))
    assert gate().status == ADMITTED
    assert gate().status == RATE_LIMITED
    assert publish_plan(1, limits(version=5, burst=50)) is False
    assert gate().status == RATE_LIMITED
    assert publish_plan(1, limits(version=11, burst=50, name="bigger")) is True
    result = gate()
    assert result.status == ADMITTED and result.plan.name == "bigger"


def _hammer(args):
    org, key, now, attempts = args
    billing_gate.reset()  # a fresh connection in the child process
    return sum(
        billing_gate.check(organization_id=org, key_id=key, endpoint="prices", cost=1, now=now).status
        == ADMITTED
        for _ in range(attempts)
    )


def test_concurrent_processes_never_exceed_the_limit():
    plan = limits(rate_per_minute=120, burst=25, key_rate_per_minute=120, monthly_credits=10**9)
    publish_plan(7, plan)
    workers, attempts = 4, 40
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        admitted = sum(pool.map(_hammer, [(7, "shared", NOW, attempts)] * workers))
        assert admitted == plan.burst
        # 5 s later exactly 5 s worth of emission intervals are available again
        later = NOW + 5 * US
        admitted_later = sum(pool.map(_hammer, [(7, "shared", later, attempts)] * workers))
    assert admitted_later == 5 * plan.rate_per_minute // 60


def test_without_an_injected_clock_the_script_uses_redis_time():
    plan = limits(rate_per_minute=60, burst=3)
    publish_plan(1, plan)
    results = [billing_gate.check(organization_id=1, key_id="k", endpoint="", cost=1) for _ in range(4)]
    assert [r.status for r in results] == [ADMITTED] * 3 + [RATE_LIMITED]
    assert [r.tenant_remaining for r in results[:3]] == [2, 1, 0]
    # Redis's clock is the wall clock: the refusal asks for about one emission interval
    assert 0 < results[-1].retry_after_s <= 60 // plan.rate_per_minute


def test_published_plan_expires_so_a_lost_republish_heals(settings):
    publish_plan(1, limits())
    ttl = redis_access.client("gateway").ttl(plan_key(1))
    assert 0 < ttl <= settings.GATEWAY_PLAN_TTL
    redis_access.client("gateway").delete(plan_key(1))  # what expiry does
    assert gate() is None  # the gateway then reloads the plan from the database


# --- the gate's own per-thread connection (outside redis-py's pool) ----------------------------------
def test_a_connection_redis_closed_while_idle_is_reopened_without_counting_twice():
    publish_plan(1, limits(burst=5))
    assert gate().tenant_remaining == 4
    conn = billing_gate.thread_connection()
    conn.send_command("CLIENT", "ID")
    redis_access.client("gateway").client_kill_filter(_id=conn.read_response())  # as a Redis restart would
    second = gate()
    assert second.status == ADMITTED
    assert second.tenant_remaining == 3  # consumed exactly once more
    assert redis_access.breaker("gateway").available()  # not mistaken for Redis being down


def test_the_script_is_reloaded_after_redis_forgot_it():
    publish_plan(1, limits(burst=5))
    assert gate().tenant_remaining == 4
    redis_access.client("gateway").script_flush()
    again = gate()
    assert again.status == ADMITTED and again.tenant_remaining == 3


def test_a_call_interrupted_before_its_reply_never_hands_that_reply_to_the_next(monkeypatch):
    publish_plan(1, limits(burst=5))
    assert gate().tenant_remaining == 4  # connected
    conn = billing_gate.thread_connection()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. a worker timeout between sending and reading

    monkeypatch.setattr(conn, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gate()  # consumed in Redis; its reply is left unread on that connection
    monkeypatch.undo()
    nxt = gate()
    # a stale read would return the interrupted call's answer (3 remaining)
    assert nxt.tenant_remaining == 2
    assert billing_gate.thread_connection() is not conn


def test_each_thread_has_its_own_gate_connection():
    import threading

    publish_plan(1, limits(burst=50))
    seen = {}

    def work(name):
        gate()
        seen[name] = billing_gate.thread_connection()

    threads = [threading.Thread(target=work, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"] is not seen["b"]
    assert gate().tenant_remaining == 50 - 3
