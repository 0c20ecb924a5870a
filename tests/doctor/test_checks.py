"""manage.py doctor's checks against the real PostgreSQL and Redis, with simulated time: a stopped beat,
a missing future partition, a stalled usage flush, ingestion lag, dead letters, Stripe, configuration,
and the bound on a check that does not answer."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apiplatform.jobs.models import DeadLetter
from apiplatform.jobs.schedules import schedules_setup
from apiplatform.ops import doctor
from billing import metering
from billing.models import StripeEvent, StripeEventStatus
from marketdata import partitions
from marketdata.models import TIMEFRAME_DELTA, Coin
from marketdata.services import bucket_floor, candles_upsert

pytestmark = pytest.mark.django_db(transaction=True)


def run(name: str, **kwargs) -> doctor.Result:
    results = doctor.run_checks(only=[name], **kwargs)
    assert len(results) == 1, results
    return results[0]


# --- beat ------------------------------------------------------------------------------------------
def test_beat_ok_while_it_ticks_and_failing_once_silent():
    schedules_setup()
    tick = timezone.now()
    PeriodicTask.objects.filter(interval__every=60).update(last_run_at=tick)

    assert run("beat", now=tick + timedelta(minutes=2)).status == doctor.OK
    stopped = run("beat", now=tick + doctor.BEAT_SILENT_AFTER + timedelta(minutes=1))
    assert stopped.status == doctor.FAIL
    assert "silent" in stopped.detail


def test_beat_fails_when_no_every_minute_schedule_is_enabled_or_none_ever_ran():
    assert "setup_schedules" in run("beat").detail  # nothing registered
    schedules_setup()
    assert run("beat").detail == "has never sent an every-minute schedule"
    PeriodicTask.objects.filter(interval__every=60).update(last_run_at=timezone.now(), enabled=False)
    assert run("beat").status == doctor.FAIL  # the ticks of disabled schedules say nothing


# --- partitions ------------------------------------------------------------------------------------
@pytest.fixture
def partitions_ready():
    partitions.partitions_maintain()
    yield
    partitions.partitions_maintain()  # put back what a test dropped


def test_partitions_ok_when_maintained_and_a_missing_future_partition_is_named(partitions_ready):
    assert run("partitions").status == doctor.OK
    tomorrow = partitions.partition_for("1m", timezone.now() + timedelta(days=1)).name
    with connection.cursor() as cur:
        cur.execute(f'DROP TABLE "{tomorrow}"')

    result = run("partitions")
    assert result.status == doctor.FAIL
    assert tomorrow in result.detail


def test_partitions_fail_when_maintenance_stopped_long_ago(partitions_ready):
    # Two weeks later, nobody having run the hourly job: today's and the next days' 1m partitions are missing.
    later = timezone.now() + timedelta(days=14)
    result = run("partitions", now=later)
    assert result.status == doctor.FAIL
    assert partitions.partition_for("1m", later).name in result.detail


# --- usage flush -----------------------------------------------------------------------------------
def _hit() -> None:
    metering.record(metering.Hit(organization_id=None, key_id="", endpoint="prices", status=401, credits=0))


def test_usage_flush_ok_while_flushing_and_failing_when_it_stalls():
    metering.usage_flush()
    assert run("usage_flush").detail == "nothing waiting"
    _hit()
    flushed = metering.usage_flush_lag().last_flush_at
    assert run("usage_flush", now=flushed + timedelta(seconds=30)).status == doctor.OK

    stalled_at = flushed + timedelta(seconds=60 * doctor.FLUSH_LAG_PERIODS + 60)
    stalled = run("usage_flush", now=stalled_at)
    assert stalled.status == doctor.FAIL
    assert "behind" in stalled.detail

    metering.usage_flush()  # the flush runs again: nothing waits any more
    assert run("usage_flush", now=stalled_at).status == doctor.OK


def test_a_batch_left_by_a_killed_flush_counts_from_its_rotation(monkeypatch):
    metering.usage_flush()
    _hit()

    def killed(name):
        if name == "after_rotate":
            raise RuntimeError("killed")

    monkeypatch.setattr(metering, "_checkpoint", killed)
    with pytest.raises(RuntimeError):
        metering.usage_flush()
    lag = metering.usage_flush_lag()
    assert lag.pending_batches == 1 and lag.waiting
    result = run("usage_flush", now=timezone.now() + timedelta(minutes=10))
    assert result.status == doctor.FAIL
    assert "1 batch(es) pending" in result.detail


# --- ingestion lag ---------------------------------------------------------------------------------
def _closed_candles(coin: Coin, end: datetime) -> None:
    """One closed candle per timeframe, the newest one ending at or before ``end``."""
    rows = []
    for tf, delta in TIMEFRAME_DELTA.items():
        start = bucket_floor(tf, end) - delta  # weeks start on Mondays, not on the epoch's Thursday
        rows.append({"coin_id": coin.pk, "timeframe": tf, "bucket_start": start, "open": 1.0, "high": 1.0,
                     "low": 1.0, "close": 1.0, "closed": True})  # fmt: skip
    candles_upsert(rows=rows, source="import", now=end)


def test_ingestion_lag_ok_when_fresh_and_failing_per_timeframe_when_stalled(partitions_ready):
    now = timezone.now().replace(second=0, microsecond=0)
    assert run("ingestion_lag", now=now).status == doctor.WARN  # a new deployment: no coins yet
    month_ago = now - timedelta(days=30)
    coin = Coin.objects.create(upstream_id="bitcoin", symbol="btc", name="Bitcoin", first_seen=month_ago)
    assert run("ingestion_lag", now=now).status == doctor.FAIL  # no closed candle at all
    _closed_candles(coin, now)

    assert run("ingestion_lag", now=now + timedelta(seconds=30)).status == doctor.OK
    later = run("ingestion_lag", now=now + timedelta(minutes=10))  # 1m limit: 3 buckets + 2 min
    assert later.status == doctor.FAIL
    assert "1m 10 min" in later.detail
    assert "5m" not in later.detail.split(":", 1)[1]  # 15 minutes for 5m is within its limit
    # Stalled longer than the selector's first window (60 buckets): the lag is still measured.
    assert "1m 3 h" in run("ingestion_lag", now=now + timedelta(hours=3, minutes=1)).detail


# --- dead letters, Stripe ----------------------------------------------------------------------------
def test_dead_letters_waiting_fail_and_resolved_ones_do_not():
    assert run("dead_letters").status == doctor.OK
    letter = DeadLetter.objects.create(task_name="billing.apply_stripe_event", app="billing")
    result = run("dead_letters")
    assert result.status == doctor.FAIL
    assert "billing.apply_stripe_event x1" in result.detail
    DeadLetter.objects.filter(pk=letter.pk).update(status=DeadLetter.Status.RESOLVED)
    assert run("dead_letters").status == doctor.OK


def _event(event_id: str, **fields) -> StripeEvent:
    return StripeEvent.objects.create(
        event_id=event_id, type="invoice.paid", created=timezone.now(), payload={}, **fields
    )


def test_stripe_not_configured_is_a_warning_not_a_failure():
    with override_settings(STRIPE_SECRET_KEY=""):
        result = run("stripe")
    assert result.status == doctor.WARN and result.ok


@override_settings(STRIPE_SECRET_KEY="sk_test_x", STRIPE_WEBHOOK_SECRET="whsec_x")
def test_stripe_webhook_recently_seen_failed_or_stuck():
    assert run("stripe").detail == "configured; no webhook event received yet"
    _event("evt_1", status=StripeEventStatus.APPLIED)
    assert run("stripe").status == doctor.OK
    assert run("stripe", now=timezone.now() + timedelta(days=8)).status == doctor.WARN

    _event("evt_2")  # received, not applied yet
    assert run("stripe").status == doctor.OK
    assert "not applied" in run("stripe", now=timezone.now() + timedelta(minutes=30)).detail
    _event("evt_3", status=StripeEventStatus.FAILED)
    assert "1 webhook event(s) failed" in run("stripe").detail


@override_settings(STRIPE_SECRET_KEY="sk_test_x", STRIPE_WEBHOOK_SECRET="")
def test_stripe_key_without_webhook_secret_fails():
    assert run("stripe").status == doctor.FAIL


# --- configuration, dependencies, the time bound ---------------------------------------------------------
def test_configuration_in_production_names_a_weak_secret(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "k" * 10 + "abcdefghij" * 5
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": "short"}
    result = run("configuration")
    assert result.status == doctor.FAIL
    assert "JWT_SIGNING_KEY" in result.detail and "SECRET_KEY is" not in result.detail


def test_configuration_in_production_with_strong_secrets_runs_the_deployment_checks(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "k" * 10 + "abcdefghij" * 5
    settings.SIMPLE_JWT = {**settings.SIMPLE_JWT, "SIGNING_KEY": "j" * 10 + "abcdefghij" * 5}
    settings.ACCOUNTS = {**settings.ACCOUNTS, "API_KEY_PEPPER": "p" * 10 + "abcdefghij" * 5}
    settings.SESSION_COOKIE_SECURE = False  # what check --deploy calls security.W012
    result = run("configuration")
    assert result.status == doctor.WARN
    assert "security.W012" in result.detail
    settings.SESSION_COOKIE_SECURE = True
    assert "security.W012" not in run("configuration").detail


def test_configuration_in_development_is_a_warning(settings):
    settings.DEBUG = True
    assert run("configuration").status == doctor.WARN


def test_a_stopped_redis_fails_its_connections_check(settings, closed_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    results = {r.check: r for r in doctor.run_checks(only=["redis:default", "redis:ingestion", "postgresql"])}
    assert results["redis:default"].status == doctor.FAIL
    assert "ConnectionError" in results["redis:default"].detail
    assert results["redis:ingestion"].status == doctor.FAIL
    assert results["postgresql"].status == doctor.OK


def test_a_check_that_does_not_answer_fails_within_the_timeout(monkeypatch, settings):
    settings.STRIPE_SECRET_KEY = ""  # the stripe check answers at once (a warning)
    release = threading.Event()

    def hangs(ctx):
        release.wait(30)
        return doctor.Result("dead_letters", doctor.OK, "too late")

    original = doctor.checks_all
    monkeypatch.setattr(
        doctor, "checks_all", lambda: [(n, hangs if n == "dead_letters" else c) for n, c in original()]
    )
    try:
        results = doctor.run_checks(only=["dead_letters", "stripe"], timeout=0.5)
    finally:
        release.set()
    assert [(r.check, r.status) for r in results] == [("dead_letters", doctor.FAIL), ("stripe", doctor.WARN)]
    assert results[0].detail == "no answer within 0.5 s"
