"""State read at scrape time from PostgreSQL and Redis: values compared with what the database, the
broker and the Redis counters say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
from django.conf import settings
from django.db.models import Max
from prometheus_client import CollectorRegistry, generate_latest

from apiplatform import redis_access
from apiplatform.celery import app as celery_app
from apiplatform.jobs.base import QUEUES
from apiplatform.jobs.models import DeadLetter
from apiplatform.metrics import StateCollector
from billing import metering
from billing.models import StripeEvent, StripeEventStatus
from ingestion.coingecko import CoinGeckoClient, RetryPolicy, key_fingerprint
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata import services
from marketdata.models import Candle
from tests.metrics.conftest import samples, value

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def collect(now: datetime = NOW) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(clock=lambda: now))
    scraped = samples(generate_latest(registry).decode())
    down = [k for k, v in scraped.items() if k[0] == "candlestack_metrics_collector_up" and v != 1]
    assert not down, down
    return scraped


def _coins(*names: str, active: bool = True) -> dict[str, int]:
    ids = services.coins_upsert(coins=[services.CoinIn(n, n[:3], n.title()) for n in names], seen_at=NOW)
    services.snapshots_upsert(
        rows=[
            services.SnapshotIn(cid, 1.0, 1e6, 1, 1e5, 1.1, 0.9, 0.0, NOW - timedelta(minutes=1), NOW)
            for cid in ids.values()
        ]
    )
    return ids


def _minutes(coin_id: int, last_start: datetime, n: int) -> list[services.CandleRow]:
    return [
        services.CandleRow(coin_id, "1m", last_start - timedelta(minutes=i), 1, 1, 1, 1, closed=True)
        for i in range(n)
    ]


def test_ingestion_lag_and_stale_coins_match_the_database():
    ids = _coins("fresh-coin", "late-coin", "empty-coin")
    minute = NOW.replace(second=0)  # 12:00: the bucket 11:59 is the newest closed one
    rows = _minutes(ids["fresh-coin"], minute - timedelta(minutes=1), 5)
    rows += _minutes(ids["late-coin"], minute - timedelta(minutes=4), 5)  # ended 11:57: 3.5 buckets ago
    rows.append(
        services.CandleRow(ids["fresh-coin"], "1m", minute, 2, 2, 2, 2, closed=False)
    )  # open: ignored
    rows.append(
        services.CandleRow(ids["fresh-coin"], "1h", minute - timedelta(hours=2), 1, 1, 1, 1, closed=True)
    )
    services.candles_upsert(rows=rows, source="import", now=NOW)
    services.coins_upsert(coins=[services.CoinIn("gone-coin", "gon", "Gone")], seen_at=NOW)  # no snapshot

    scraped = collect()

    newest = Candle.objects.filter(timeframe="1m", closed=True).aggregate(m=Max("bucket_start"))["m"]
    expected_lag = (NOW - (newest + timedelta(minutes=1))).total_seconds()
    assert expected_lag == 30.0
    assert value(scraped, "candlestack_ingestion_lag_seconds", timeframe="1m") == expected_lag
    assert value(scraped, "candlestack_ingestion_newest_candle_end_timestamp_seconds", timeframe="1m") == (
        minute.timestamp()
    )
    # late-coin (3.5 buckets) and empty-coin (none) are stale at 1m; every coin is stale at 5m
    assert value(scraped, "candlestack_ingestion_stale_coins", timeframe="1m") == 2
    assert value(scraped, "candlestack_ingestion_stale_coins", timeframe="5m") == 3
    # 1h: fresh-coin's candle 10:00-11:00 ended 1 h ago (1 bucket): fresh; the others have none
    assert value(scraped, "candlestack_ingestion_lag_seconds", timeframe="1h") == 3630.0
    assert value(scraped, "candlestack_ingestion_stale_coins", timeframe="1h") == 2
    assert value(scraped, "candlestack_ingestion_universe_coins") == 3
    assert value(scraped, "candlestack_ingestion_bucket_seconds", timeframe="15m") == 900
    # a timeframe without any candle has no lag sample (not a made-up number)
    assert ("candlestack_ingestion_lag_seconds", frozenset({("timeframe", "1d")})) not in scraped

    # two minutes later, with nothing written, the lag has grown by exactly that much
    later = collect(NOW + timedelta(minutes=2))
    assert value(later, "candlestack_ingestion_lag_seconds", timeframe="1m") == expected_lag + 120
    assert value(later, "candlestack_ingestion_stale_coins", timeframe="1m") == 3


def test_candles_written_and_rejected_are_counted_once_committed(django_capture_on_commit_callbacks):
    ids = _coins("count-coin")
    cid = ids["count-coin"]
    rows = _minutes(cid, NOW.replace(second=0) - timedelta(minutes=1), 4)
    rows.append(services.CandleRow(cid, "1m", NOW - timedelta(hours=1), -1, 1, 1, 1, closed=True))  # invalid
    with django_capture_on_commit_callbacks(execute=False) as uncommitted:
        services.candles_upsert(rows=rows[:2], source="import", now=NOW)  # its commit callbacks never run
    assert uncommitted  # counted on commit only: a rolled-back write counts nothing
    assert value(collect(), "candlestack_candles_written_total", timeframe="1m", source="import") == 0
    with django_capture_on_commit_callbacks(execute=True):
        result = services.candles_upsert(rows=rows[2:], source="import", now=NOW)
        again = services.candles_upsert(rows=rows[:2], source="import", now=NOW)  # unchanged: not written
    assert (result.written, result.rejected, again.written) == (2, 1, 0)
    scraped = collect()
    assert value(scraped, "candlestack_candles_written_total", timeframe="1m", source="import") == 2
    assert value(scraped, "candlestack_candles_rejected_total", source="import") == 1
    assert value(scraped, "candlestack_ticks_rejected_jump_total") == 0


def test_dead_letters_by_app_task_and_status():
    DeadLetter.objects.create(task_name="ingestion.backfill", app="ingestion", args=["a"])
    DeadLetter.objects.create(task_name="ingestion.backfill", app="ingestion", args=["b"])
    DeadLetter.objects.create(
        task_name="ingestion.backfill", app="ingestion", args=["c"], status=DeadLetter.Status.RESOLVED
    )
    DeadLetter.objects.create(task_name="billing.apply_stripe_event", app="billing", args=["evt"])
    scraped = collect()
    name = "candlestack_dead_letters"
    assert value(scraped, name, app="ingestion", task="ingestion.backfill", status="pending") == 2
    assert value(scraped, name, app="ingestion", task="ingestion.backfill", status="resolved") == 1
    assert value(scraped, name, app="billing", task="billing.apply_stripe_event", status="pending") == 1


@pytest.fixture
def broker():
    conn = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    conn.delete(*QUEUES)
    yield conn
    conn.delete(*QUEUES)
    conn.close()


def test_queue_depth_is_the_brokers_queue_length(broker):
    for _ in range(3):
        celery_app.send_task("jobs.housekeeping", queue="backfill")
    celery_app.send_task("jobs.housekeeping", queue="ingestion")
    scraped = collect()
    assert broker.llen("backfill") == 3
    assert value(scraped, "candlestack_celery_queue_depth", queue="backfill") == 3
    assert value(scraped, "candlestack_celery_queue_depth", queue="ingestion") == 1
    assert value(scraped, "candlestack_celery_queue_depth", queue="default") == 0


def test_usage_flush_lag_and_stripe_webhook_backlog():
    assert value(collect(), "candlestack_usage_flush_lag_seconds") == 0  # nothing waits
    metering.usage_flush()
    gateway = redis_access.client("gateway")
    flushed_at = int(gateway.get(metering.usage_flushed_key())) / 1e9  # when it emptied the live hash
    gateway.hset(metering.usage_live_key(), "a-bucket|2xx|n", 1)  # usage counted since then
    at = datetime.fromtimestamp(flushed_at, tz=UTC) + timedelta(seconds=90)
    StripeEvent.objects.create(
        event_id="evt_old",
        type="invoice.paid",
        created=at,
        payload={},
        received_at=at - timedelta(minutes=10),
    )
    StripeEvent.objects.create(
        event_id="evt_new", type="invoice.paid", created=at, payload={}, received_at=at
    )
    StripeEvent.objects.create(
        event_id="evt_bad", type="invoice.paid", created=at, payload={}, status=StripeEventStatus.FAILED
    )
    StripeEvent.objects.create(
        event_id="evt_done", type="invoice.paid", created=at, payload={}, status=StripeEventStatus.APPLIED
    )
    scraped = collect(at)
    assert value(scraped, "candlestack_usage_flush_lag_seconds") == pytest.approx(90, abs=0.01)
    assert value(scraped, "candlestack_stripe_events_waiting") == 2
    assert value(scraped, "candlestack_stripe_event_oldest_waiting_seconds") == 600
    assert value(scraped, "candlestack_stripe_events_failed") == 1


def test_upstream_calls_retries_and_429s_by_endpoint_and_hashed_key():
    clock = ManualClock("2026-03-01T12:00:00Z")
    sim = Simulator(SimulatorConfig(coins=50, seed=7), clock=clock)
    client = CoinGeckoClient(
        base_url="http://sim/api/v3",
        api_keys=["k1-secret-key"],
        transport=httpx.WSGITransport(app=sim),
        redis=redis_access.client("ingestion"),
        budget_key=redis_access.key("cg", "budget"),
        metrics_key=redis_access.key("cg", "metrics"),
        disabled_keys_key=redis_access.key("cg", "keys", "disabled"),
        rate_limit_per_min=500,
        clock=clock,
        sleep=lambda s: None,
        retry=RetryPolicy(
            max_attempts=5, base_delay=0.01, max_delay=0.05, max_total=20, retry_after_cap=0.05
        ),
    )
    try:
        sim.force(429, 2, retry_after=0.01)
        assert client.ping()  # 2 x 429, then 200: 3 attempts, 2 retries
        client.coins_markets_page(1, per_page=10)
        client.ohlc("bitcoin", 1)
    finally:
        client.close()
    scraped = collect()
    text = generate_latest_text()
    fp = key_fingerprint("k1-secret-key")
    assert "k1-secret-key" not in text and fp in text
    assert value(scraped, "candlestack_upstream_calls_total", endpoint="/ping", key=fp) == 3
    assert value(scraped, "candlestack_upstream_retries_total", endpoint="/ping", key=fp) == 2
    assert value(scraped, "candlestack_upstream_rate_limited_total", endpoint="/ping", key=fp) == 2
    assert value(scraped, "candlestack_upstream_calls_total", endpoint="/coins/markets", key=fp) == 1
    assert value(scraped, "candlestack_upstream_calls_total", endpoint="/coins/{id}/ohlc", key=fp) == 1
    assert "bitcoin" not in text
    assert value(scraped, "candlestack_upstream_latency_seconds_count", endpoint="/ping", key=fp) == 3
    assert (
        value(scraped, "candlestack_upstream_latency_seconds_bucket", endpoint="/ping", key=fp, le="+Inf")
        == 3
    )
    assert value(scraped, "candlestack_upstream_budget_used") == 5  # every attempt took budget
    assert value(scraped, "candlestack_upstream_budget_limit") == settings.COINGECKO_RATE_LIMIT_PER_MIN
    assert value(scraped, "candlestack_upstream_events_total", event="failures") == 0


def generate_latest_text() -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector())
    return generate_latest(registry).decode()


def test_open_quality_flags_by_kind_and_timeframe():
    from ingestion.models import QualityFlag

    cid = _coins("flag-coin")["flag-coin"]
    span = {"range_start": NOW - timedelta(hours=1), "range_end": NOW}
    QualityFlag.objects.create(coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.MISSING, **span)
    QualityFlag.objects.create(coin_id=cid, timeframe="1h", kind=QualityFlag.Kind.MISSING, **span)
    QualityFlag.objects.create(coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.JUMP, **span)
    QualityFlag.objects.create(
        coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.JUMP, resolved_at=NOW, **span
    )
    scraped = collect()
    name = "candlestack_quality_flags_open"
    assert value(scraped, name, kind="missing", timeframe="1m") == 1
    assert value(scraped, name, kind="missing", timeframe="1h") == 1
    assert value(scraped, name, kind="jump", timeframe="1m") == 1  # the resolved one is not open


def test_candles_flagged_counts_the_buckets_of_open_jump_and_missing_flags():
    from ingestion.models import QualityFlag

    cid = _coins("flagged-coin")["flagged-coin"]
    # a jump over 3 one-minute candles, a missing hour at 1h (2 buckets), resolved and stale ones left out
    QualityFlag.objects.create(
        coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.JUMP,
        range_start=NOW - timedelta(minutes=10), range_end=NOW - timedelta(minutes=7),
    )  # fmt: skip
    QualityFlag.objects.create(
        coin_id=cid, timeframe="1h", kind=QualityFlag.Kind.MISSING,
        range_start=NOW - timedelta(hours=5), range_end=NOW - timedelta(hours=3),
    )  # fmt: skip
    QualityFlag.objects.create(
        coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.JUMP, resolved_at=NOW,
        range_start=NOW - timedelta(minutes=30), range_end=NOW - timedelta(minutes=20),
    )  # fmt: skip
    QualityFlag.objects.create(
        coin_id=cid, timeframe="1m", kind=QualityFlag.Kind.STALE,
        range_start=NOW - timedelta(minutes=30), range_end=NOW,
    )  # fmt: skip
    scraped = collect()
    name = "candlestack_candles_flagged"
    assert value(scraped, name, kind="jump", timeframe="1m") == 3
    assert value(scraped, name, kind="missing", timeframe="1h") == 2
    assert not [k for k in scraped if k[0] == name and ("kind", "stale") in k[1]]
    assert value(scraped, "candlestack_quality_flags_open", kind="stale", timeframe="1m") == 1


def test_last_run_of_every_schedule_and_beats_last_sign_of_life():
    from django_celery_beat.models import PeriodicTask

    from apiplatform.jobs.models import JobRun
    from apiplatform.jobs.schedules import schedules_all, schedules_setup

    schedules_setup()
    specs = schedules_all()
    first, second = specs[0], specs[1]
    PeriodicTask.objects.filter(name=first.name).update(last_run_at=NOW - timedelta(minutes=3))
    PeriodicTask.objects.filter(name=second.name).update(last_run_at=NOW - timedelta(minutes=1))
    JobRun.objects.create(
        job=first.task, started_at=NOW - timedelta(minutes=9), finished_at=NOW - timedelta(minutes=8),
        outcome=JobRun.Outcome.SUCCESS,
    )  # fmt: skip
    JobRun.objects.create(
        job=first.task, started_at=NOW - timedelta(minutes=3), finished_at=NOW - timedelta(minutes=2),
        outcome=JobRun.Outcome.FAILED,
    )  # fmt: skip
    scraped = collect()
    name = "candlestack_schedule_last_run_timestamp_seconds"
    first_at = (NOW - timedelta(minutes=3)).timestamp()
    assert value(scraped, name, schedule=first.name, task=first.task) == first_at
    assert (
        value(scraped, "candlestack_beat_last_run_timestamp_seconds")
        == (NOW - timedelta(minutes=1)).timestamp()
    )
    # the newest SUCCESSFUL run, not the newest run
    assert value(scraped, "candlestack_job_last_success_timestamp_seconds", job=first.task) == (
        (NOW - timedelta(minutes=8)).timestamp()
    )
    never_ran = [s for s in specs[2:] if s.task not in (first.task, second.task)]
    assert never_ran and (
        name,
        frozenset({("schedule", never_ran[0].name), ("task", never_ran[0].task)}),
    ) not in (scraped)


def test_ticks_rejected_as_implausible_jumps_are_counted(django_capture_on_commit_callbacks):
    from ingestion import pipeline

    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    clock = ManualClock(start)
    sim = Simulator(SimulatorConfig(coins=40, seed=11), clock=clock)
    client = CoinGeckoClient(
        base_url="http://sim/api/v3",
        api_keys=["k1"],
        transport=httpx.WSGITransport(app=sim),
        redis=redis_access.client("ingestion"),
        budget_key=redis_access.key("cg", "budget"),
        metrics_key=redis_access.key("cg", "metrics"),
        clock=clock,
        sleep=lambda s: None,
    )
    jumps = 0
    try:
        with django_capture_on_commit_callbacks(execute=True):
            for cycle in range(4):
                t = start + timedelta(minutes=cycle, seconds=30)
                clock.set(t)
                if cycle == 1:
                    sim.set_faults(spike_rate=0.2, seed=3)
                jumps += pipeline.refresh_markets(client, now=t).details["jumps_rejected"]
    finally:
        client.close()
    assert jumps > 0  # the scenario really had implausible jumps
    assert value(collect(), "candlestack_ticks_rejected_jump_total") == jumps
