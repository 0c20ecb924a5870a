"""End to end with the real pipeline and the CoinGecko simulator (in-process, no network): an
upstream outage makes a quality re-fetch exhaust its retries and land in the dead-letter table;
once upstream is back, replaying the dead letter completes the missing candles and the quality
check resolves the flag."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apiplatform.jobs import services
from apiplatform.jobs.models import DeadLetter
from ingestion import pipeline, quality, tasks
from ingestion.coingecko import CoinGeckoClient, RetryPolicy
from ingestion.models import QualityFlag
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata.models import Candle, Coin
from tests.conftest import simulator_client

HOUR = timedelta(hours=1)


@pytest.fixture
def upstream(monkeypatch):
    """The simulator behind real CoinGecko clients; every client the tasks build talks to it."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    clock = ManualClock(now)
    sim = Simulator(SimulatorConfig(coins=5, seed=11), clock=clock)
    prefix = f"test:{uuid.uuid4().hex[:8]}"  # every client shares one budget, as workers do

    def make_client() -> CoinGeckoClient:
        return simulator_client(
            sim,
            clock=clock,
            prefix=prefix,
            rate_limit_per_min=100_000,
            retry=RetryPolicy(
                max_attempts=2, base_delay=0.01, max_delay=0.02, max_total=5, retry_after_cap=1
            ),
        )

    monkeypatch.setattr(tasks.CoinGeckoClient, "from_settings", staticmethod(make_client))
    yield sim, make_client, now


@pytest.mark.django_db
def test_replaying_a_dead_lettered_refetch_completes_the_missing_candles(upstream, monkeypatch):
    sim, make_client, now = upstream
    with make_client() as client:
        pipeline.sync_universe(client, now=now)
    coin = Coin.objects.order_by("upstream_id").first()
    start, end = now - 8 * HOUR, now - 2 * HOUR
    flag = QualityFlag.objects.create(
        coin=coin, timeframe="1h", kind="missing", range_start=start, range_end=end
    )

    def stored() -> int:
        return Candle.objects.filter(
            coin_id=coin.pk, timeframe="1h", bucket_start__gte=start, bucket_start__lt=end
        ).count()

    # upstream down: every call answers 503; the re-fetch retries, then is dead-lettered
    sim.set_faults(error_rate=1.0, error_statuses=(503,))
    failed = tasks.refetch_range.apply(kwargs={"flag_id": flag.pk})
    assert failed.failed()
    letter = DeadLetter.objects.get(task_name="ingestion.refetch_range")
    assert letter.kwargs == {"flag_id": flag.pk}
    assert letter.attempts == tasks.refetch_range.max_retries + 1
    assert letter.retryable is True
    assert stored() == 0

    # upstream back; the operator replays (the message the replay sends is run here eagerly)
    sim.set_faults(error_rate=0.0)
    sent = []
    monkeypatch.setattr("apiplatform.jobs.services.transaction.on_commit", lambda fn: sent.append(fn))
    services.dead_letter_replay(dead_letter_id=letter.pk)
    assert len(sent) == 1
    letter.refresh_from_db()
    replay = tasks.refetch_range.apply(
        kwargs=letter.kwargs, task_id=letter.replay_task_id, headers={"dead_letter_id": letter.pk}
    )
    assert replay.successful(), replay.traceback

    expected = int((end - start) / HOUR)
    assert stored() == expected  # every missing hour is there now
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replay_succeeded_at is not None

    # the next quality check sees the range complete and resolves the flag
    monkeypatch.setattr(quality, "missing_lookback", lambda: {})
    monkeypatch.setattr(quality, "jump_lookback", lambda: {})
    monkeypatch.setattr(quality, "find_stale", lambda **kw: [])
    quality.run_checks(now=now, schedule_refetch=False)
    flag.refresh_from_db()
    assert flag.resolved_at is not None


def test_finer_flags_refetch_the_covering_range_of_the_finest_history_upstream_has():
    t = timezone.now().replace(hour=10, minute=0, second=0, microsecond=0)
    assert tasks.refetch_plan("1h", t, t + 3 * HOUR) == ("1h", t, t + 3 * HOUR)
    assert tasks.refetch_plan("1m", t + timedelta(minutes=50), t + timedelta(minutes=55)) == (
        "1h",
        t,
        t + HOUR,
    )
    assert tasks.refetch_plan("1m", t + timedelta(minutes=50), t + timedelta(minutes=65)) == (
        "1h",
        t,
        t + 2 * HOUR,
    )
    assert tasks.refetch_plan("1m", t, t + HOUR) == ("1h", t, t + HOUR)
