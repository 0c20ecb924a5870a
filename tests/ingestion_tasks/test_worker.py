"""Delivery semantics with a REAL worker process (broker: this run's Redis db, database: the test DB).

Each test commits its data (transaction=True) so the worker subprocess sees it. Timings are bounded
waits, never assertions."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from django.core.cache import cache

from apiplatform.jobs import services
from apiplatform.jobs.models import DeadLetter, JobRun
from marketdata.models import Candle
from marketdata.services import CoinIn, coins_upsert
from tests.ingestion_tasks import worker_tasks
from tests.ingestion_tasks.conftest import wait_until
from tests.ingestion_tasks.worker_tasks import T0, attempts_key, candle_values, heal_key

pytestmark = pytest.mark.timeout(120)


@pytest.mark.django_db(transaction=True)
def test_real_worker_retries_then_dead_letters_and_replay_completes_the_work(start_worker):
    worker = start_worker()
    transient = worker_tasks.transient_until_healed.delay("w1", rows=3)
    permanent = worker_tasks.permanent.delay("w2")
    max_retries = worker_tasks.transient_until_healed.max_retries

    wait_until(lambda: DeadLetter.objects.count() == 2, timeout=30, message="two dead letters")
    letter = DeadLetter.objects.get(task_name="tests.transient_until_healed")
    assert letter.task_id == transient.id
    assert letter.attempts == max_retries + 1 == cache.get(attempts_key("w1"))
    assert letter.args == ["w1"] and letter.kwargs == {"rows": 3}
    assert letter.retryable is True
    immediate = DeadLetter.objects.get(task_name="tests.permanent")
    assert immediate.task_id == permanent.id
    assert immediate.attempts == 1 == cache.get(attempts_key("w2"))
    assert immediate.retryable is False
    assert not JobRun.objects.filter(job="tests.transient_until_healed:w1").exists()

    log = worker.log()
    assert f"task={transient.id}" in log  # the task id is on the task's log lines
    assert f"retry {max_retries}/{max_retries}" in log

    # The cause goes away; the operator replays: the task runs again and does its work.
    cache.set(heal_key("w1"), True)
    services.dead_letter_replay(dead_letter_id=letter.pk)
    wait_until(
        lambda: DeadLetter.objects.get(pk=letter.pk).replay_succeeded_at is not None,
        timeout=20,
        message="replay to succeed",
    )
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    run = JobRun.objects.get(job="tests.transient_until_healed:w1")
    assert run.task_id == letter.replay_task_id
    assert run.outcome == JobRun.Outcome.SUCCESS
    assert run.rows_written == 3
    assert f"task={letter.replay_task_id}" in worker.log()


@pytest.fixture
def coin_id():
    return coins_upsert(coins=[CoinIn("killtest", "kil", "Kill Test")])["killtest"]


def _stored() -> int:
    return Candle.objects.filter(timeframe="1m").count()


def _assert_exactly_once(coin: int, total: int, task_id: str, written_at_kill: int) -> None:
    rows = list(
        Candle.objects.filter(coin_id=coin, timeframe="1m")
        .order_by("bucket_start")
        .values_list("bucket_start", "open", "high", "low", "close", "revision")
    )
    expected = [T0 + timedelta(minutes=i) for i in range(total)]
    assert [r[0] for r in rows] == expected  # nothing lost, nothing twice
    assert all(r[1:5] == candle_values(i) for i, r in enumerate(rows))
    assert {r[5] for r in rows} == {0}  # no row was ever rewritten (the rerun changed nothing)
    runs = list(JobRun.objects.filter(job="tests.write_candle_batches").order_by("started_at"))
    assert [r.task_id for r in runs] == [task_id, task_id]  # the same message, delivered twice
    assert runs[0].outcome == JobRun.Outcome.RUNNING  # killed: never finished
    assert runs[1].outcome == JobRun.Outcome.SUCCESS
    # the rerun inserted exactly what was missing and found the rest unchanged
    assert runs[1].rows_written == total - written_at_kill
    assert runs[1].details["unchanged"] == written_at_kill


@pytest.mark.django_db(transaction=True)
def test_whole_worker_sigkill_mid_batch_is_redelivered_after_visibility_timeout(start_worker, coin_id):
    # Solo pool: the task runs in the worker's only process, so SIGKILL to it is a machine loss —
    # no parent survives to requeue; only the broker's visibility timeout brings the task back.
    fast_restore = {"CELERY_VISIBILITY_TIMEOUT": "5", "CELERY_UNACKED_RESTORE_INTERVAL": "1"}
    first = start_worker(pool="solo", env=fast_restore)
    total, batch = 1000, 50
    result = worker_tasks.write_candle_batches.delay(coin_id, total, batch, 0.25)
    wait_until(lambda: _stored() >= 3 * batch, timeout=20, message="a few batches")
    first.kill()
    written_at_kill = _stored()
    assert 0 < written_at_kill < total  # really killed in the middle

    second = start_worker(pool="solo", env=fast_restore)
    wait_until(
        lambda: JobRun.objects.filter(job="tests.write_candle_batches", outcome="success").exists(),
        timeout=30,
        message="redelivery to finish",
    )
    runs = worker_tasks.starts()
    assert [s[0] for s in runs] == [result.id, result.id]
    assert runs[0][1] != runs[1][1]  # a different process finished it
    assert runs[1][2] is True  # and the broker marked it redelivered
    assert "redelivered" in second.log()
    _assert_exactly_once(coin_id, total, result.id, written_at_kill)


@pytest.mark.django_db(transaction=True)
def test_pool_child_sigkill_mid_batch_is_requeued_at_once(start_worker, coin_id):
    # Prefork pool: the parent survives the child's SIGKILL; with acks_late and
    # task_reject_on_worker_lost it rejects the message back to the queue and a new child reruns it,
    # without waiting for the visibility timeout (left at its production value here).
    start_worker(pool="prefork")
    total, batch = 600, 50
    result = worker_tasks.write_candle_batches.delay(coin_id, total, batch, 0.25)
    wait_until(lambda: _stored() >= 3 * batch, timeout=20, message="a few batches")
    child_pid = worker_tasks.starts()[0][1]
    os.kill(child_pid, signal.SIGKILL)
    written_at_kill = _stored()
    assert 0 < written_at_kill < total

    wait_until(
        lambda: JobRun.objects.filter(job="tests.write_candle_batches", outcome="success").exists(),
        timeout=30,
        message="requeued task to finish",
    )
    runs = worker_tasks.starts()
    assert [s[0] for s in runs] == [result.id, result.id]
    assert runs[1][1] != child_pid
    _assert_exactly_once(coin_id, total, result.id, written_at_kill)
