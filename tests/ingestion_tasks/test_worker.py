"""Delivery semantics with a REAL worker process (broker: this run's Redis db, database: the test DB).

Each test commits its data (transaction=True) so the worker subprocess sees it. Timings are bounded
waits, never assertions."""

from __future__ import annotations

import os
import signal

import pytest
from django.core.cache import cache
from django.db import connection

from ingestion import services
from ingestion.models import DeadLetter, IngestionRun
from tests.ingestion_tasks import worker_tasks
from tests.ingestion_tasks.conftest import wait_until
from tests.ingestion_tasks.worker_tasks import attempts_key, heal_key

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
    assert not IngestionRun.objects.filter(job="tests.transient_until_healed:w1").exists()

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
    run = IngestionRun.objects.get(job="tests.transient_until_healed:w1")
    assert run.task_id == letter.replay_task_id
    assert run.outcome == IngestionRun.Outcome.SUCCESS
    assert run.rows_written == 3
    assert f"task={letter.replay_task_id}" in worker.log()


KILL_TABLE = "h6_kill_rows"


@pytest.fixture
def kill_table(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {KILL_TABLE}, {KILL_TABLE}_starts")
        cursor.execute(f"CREATE TABLE {KILL_TABLE} (id int PRIMARY KEY, value bigint NOT NULL)")
        cursor.execute(
            f"CREATE TABLE {KILL_TABLE}_starts"
            " (n serial PRIMARY KEY, task_id text, pid int, redelivered bool)"
        )
    yield KILL_TABLE
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {KILL_TABLE}, {KILL_TABLE}_starts")


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - test constant
        return cursor.fetchone()[0]


def _starts(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT task_id, pid, redelivered FROM {table}_starts ORDER BY n")  # noqa: S608
        return cursor.fetchall()


def _assert_exactly_once(table: str, total: int, task_id: str, written_at_kill: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, value FROM {table} ORDER BY id")  # noqa: S608
        rows = cursor.fetchall()
    assert [r[0] for r in rows] == list(range(total))  # nothing lost, nothing twice
    assert all(value == i * 7 + 1 for i, value in rows)
    runs = list(IngestionRun.objects.filter(job="tests.write_batches").order_by("started_at"))
    assert [r.task_id for r in runs] == [task_id, task_id]  # the same message, delivered twice
    assert runs[0].outcome == IngestionRun.Outcome.RUNNING  # killed: never finished
    assert runs[1].outcome == IngestionRun.Outcome.SUCCESS
    # the rerun rewrote no row the killed run had already written (idempotent, no bloat)
    assert runs[1].rows_written == total - written_at_kill


@pytest.mark.django_db(transaction=True)
def test_whole_worker_sigkill_mid_batch_is_redelivered_after_visibility_timeout(start_worker, kill_table):
    # Solo pool: the task runs in the worker's only process, so SIGKILL to it is a machine loss —
    # no parent survives to requeue; only the broker's visibility timeout brings the task back.
    fast_restore = {"CELERY_VISIBILITY_TIMEOUT": "5", "CELERY_UNACKED_RESTORE_INTERVAL": "1"}
    first = start_worker(pool="solo", env=fast_restore)
    total, batch = 1000, 50
    result = worker_tasks.write_batches.delay(kill_table, total, batch, 0.25)
    wait_until(lambda: _count(kill_table) >= 3 * batch, timeout=20, message="a few batches")
    first.kill()
    written_at_kill = _count(kill_table)
    assert 0 < written_at_kill < total  # really killed in the middle

    start_worker(pool="solo", env=fast_restore)
    wait_until(
        lambda: IngestionRun.objects.filter(job="tests.write_batches", outcome="success").exists(),
        timeout=30,
        message="redelivery to finish",
    )
    starts = _starts(kill_table)
    assert [s[0] for s in starts] == [result.id, result.id]
    assert starts[0][1] != starts[1][1]  # a different process finished it
    _assert_exactly_once(kill_table, total, result.id, written_at_kill)


@pytest.mark.django_db(transaction=True)
def test_pool_child_sigkill_mid_batch_is_requeued_at_once(start_worker, kill_table):
    # Prefork pool: the parent survives the child's SIGKILL; with acks_late and
    # task_reject_on_worker_lost it rejects the message back to the queue and a new child reruns it,
    # without waiting for the visibility timeout (left at its production value here).
    start_worker(pool="prefork")
    total, batch = 600, 50
    result = worker_tasks.write_batches.delay(kill_table, total, batch, 0.25)
    wait_until(lambda: _count(kill_table) >= 3 * batch, timeout=20, message="a few batches")
    child_pid = _starts(kill_table)[0][1]
    os.kill(child_pid, signal.SIGKILL)
    written_at_kill = _count(kill_table)
    assert 0 < written_at_kill < total

    wait_until(
        lambda: IngestionRun.objects.filter(job="tests.write_batches", outcome="success").exists(),
        timeout=30,
        message="requeued task to finish",
    )
    starts = _starts(kill_table)
    assert [s[0] for s in starts] == [result.id, result.id]
    assert starts[1][1] != child_pid
    _assert_exactly_once(kill_table, total, result.id, written_at_kill)
