"""Metering flush: exactly once, whatever point a flush is interrupted at."""

from __future__ import annotations

import random

import pytest

from apiplatform import redis_access
from billing import metering
from billing.limits import US
from billing.models import UsageFlushBatch, UsageRecord
from billing.redis_layout import hour_of, usage_pending_key

pytestmark = pytest.mark.django_db

HOUR = 1_790_000_000 * US


class Killed(Exception):
    pass


def hits(org_id: int, n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        status = rng.choice([200, 200, 200, 404, 429, 500])
        cost = rng.choice([1, 2, 5]) if status == 200 else 0
        out.append(
            metering.Hit(
                organization_id=org_id,
                key_id=rng.choice(["ka", "kb"]),
                endpoint=rng.choice(["prices", "candles"]),
                status=status,
                credits=cost,
                now_us=HOUR + rng.randrange(3 * 3600) * US,
            )
        )
    return out


def totals():
    rows = list(UsageRecord.objects.all())
    return sum(r.requests for r in rows), sum(r.credits for r in rows)


@pytest.fixture
def org(db):
    from accounts.services.organizations import organization_create

    return organization_create(name="Metered")


@pytest.mark.parametrize("kill_at", ["after_rotate", "before_commit", "after_commit"])
def test_interrupted_flush_rerun_neither_loses_nor_double_counts(org, monkeypatch, kill_at):
    first = hits(org.pk, 120, seed=1)
    for hit in first:
        metering.record(hit)

    def checkpoint(name):
        if name == kill_at:
            raise Killed(name)

    monkeypatch.setattr(metering, "_checkpoint", checkpoint)
    with pytest.raises(Killed):
        metering.usage_flush()
    # traffic continues while the flush is down
    second = hits(org.pk, 80, seed=2)
    for hit in second:
        metering.record(hit)
    monkeypatch.setattr(metering, "_checkpoint", lambda name: None)
    metering.usage_flush()
    metering.usage_flush()  # idempotent
    every = first + second
    assert totals() == (len(every), sum(h.credits for h in every))
    # per bucket too, computed independently from the hits
    expected: dict[tuple, int] = {}
    for h in every:
        bucket = (hour_of(h.now_us), h.key_id, h.endpoint, metering.status_class(h.status))
        expected[bucket] = expected.get(bucket, 0) + 1
    got = {
        (int(r.hour.timestamp()), r.key_id, r.endpoint, r.status_class): r.requests
        for r in UsageRecord.objects.all()
    }
    assert got == expected
    r = redis_access.client("gateway")
    assert r.scard(usage_pending_key()) == 0


def test_an_already_applied_batch_is_skipped(org, monkeypatch):
    for hit in hits(org.pk, 10, seed=3):
        metering.record(hit)

    def die_after_commit(name):
        if name == "after_commit":
            raise Killed(name)

    monkeypatch.setattr(metering, "_checkpoint", die_after_commit)
    with pytest.raises(Killed):
        metering.usage_flush()
    assert UsageFlushBatch.objects.count() == 1
    monkeypatch.setattr(metering, "_checkpoint", lambda name: None)
    result = metering.usage_flush()
    assert (result.applied, result.skipped) == (0, 1)
    assert totals()[0] == 10


def test_flush_usage_command(org):
    from django.core.management import call_command

    for hit in hits(org.pk, 7, seed=4):
        metering.record(hit)
    call_command("flush_usage", verbosity=0)
    assert totals()[0] == 7


def test_flush_task_runs_the_flush(org):
    from billing.tasks import flush_usage

    for hit in hits(org.pk, 5, seed=5):
        metering.record(hit)
    flush_usage.apply()
    assert totals()[0] == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_flushes_while_traffic_flows_apply_every_batch_once():
    import threading

    from django.db import connection as main_connection

    from accounts.services.organizations import organization_create

    org = organization_create(name="Concurrent")
    every = hits(org.pk, 400, seed=6)
    errors: list[BaseException] = []

    def traffic():
        for hit in every:
            metering.record(hit)

    def flusher():
        from django.db import connection

        try:
            for _ in range(15):
                metering.usage_flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=traffic),
        threading.Thread(target=flusher),
        threading.Thread(target=flusher),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    metering.usage_flush()
    main_connection.close()
    assert totals() == (len(every), sum(h.credits for h in every))
    batches = UsageFlushBatch.objects.all()
    assert sum(b.requests for b in batches) == len(every)


def test_counters_of_an_unknown_organization_are_quarantined_and_the_rest_lands(org):
    # e.g. counters written to this Redis by another deployment's database: the batch must not
    # fail on them (it would block every later flush); they are kept aside and reported.
    good = hits(org.pk, 30, seed=7)
    stray = hits(org.pk + 10_000, 5, seed=8)
    for hit in good + stray:
        metering.record(hit)

    result = metering.usage_flush()

    assert result.applied == 1
    assert totals() == (len(good), sum(h.credits for h in good))
    batch = UsageFlushBatch.objects.get()
    assert sum(q["requests"] for q in batch.quarantined) == len(stray)
    assert sum(q["credits"] for q in batch.quarantined) == sum(h.credits for h in stray)
    assert {q["organization_id"] for q in batch.quarantined} == {org.pk + 10_000}
    assert (batch.requests, batch.credits) == (len(good), sum(h.credits for h in good))
    assert redis_access.client("gateway").scard(usage_pending_key()) == 0
