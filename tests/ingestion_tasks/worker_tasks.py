"""Tasks used only by the tests: imported by the test process and by the real worker subprocesses
(``celery worker -I tests.ingestion_tasks.worker_tasks``). They are built with the production
decorator, so they exercise the real retry taxonomy, dead-lettering, logging and acks_late."""

from __future__ import annotations

import logging
import os
import time

from django.core.cache import cache
from django.db import connection, transaction

from ingestion.services import ingestion_run_record
from ingestion.taskbase import QUEUE_INGESTION, PermanentError, RetryableError, project_task

logger = logging.getLogger(__name__)

FAST_BACKOFF = {"backoff_base": 0.05, "backoff_max": 0.2}


def attempts_key(key: str) -> str:
    return f"h6-test:{key}:attempts"


def heal_key(key: str) -> str:
    return f"h6-test:{key}:healed"


def _count_attempt(key: str) -> int:
    cache.add(attempts_key(key), 0, timeout=600)
    return cache.incr(attempts_key(key))


@project_task(name="tests.transient_until_healed", queue=QUEUE_INGESTION, max_retries=3, **FAST_BACKOFF)
def transient_until_healed(self, key: str, *, rows: int = 1) -> int:
    """Fails with a retryable error until the test sets the heal flag; then records a run."""
    _count_attempt(key)
    if not cache.get(heal_key(key)):
        raise RetryableError(f"upstream unavailable for {key}")
    with ingestion_run_record(job=f"tests.transient_until_healed:{key}", task_id=self.request.id) as run:
        run.rows_written = rows
    return rows


@project_task(name="tests.flaky", queue=QUEUE_INGESTION, max_retries=3, **FAST_BACKOFF)
def flaky(self, key: str, fail_times: int) -> int:
    """Fails with a connection error ``fail_times`` times, then succeeds and records a run."""
    attempt = _count_attempt(key)
    if attempt <= fail_times:
        raise ConnectionError(f"connection reset (attempt {attempt})")
    with ingestion_run_record(job=f"tests.flaky:{key}", task_id=self.request.id) as run:
        run.details["attempt"] = attempt
    return attempt


@project_task(name="tests.permanent", queue=QUEUE_INGESTION, max_retries=3, **FAST_BACKOFF)
def permanent(self, key: str, reason: str = "bad input") -> None:
    _count_attempt(key)
    if reason == "value":
        raise ValueError(f"cannot parse {key}")
    raise PermanentError(f"{reason} for {key}")


@project_task(name="tests.write_batches", queue=QUEUE_INGESTION, max_retries=0)
def write_batches(self, table: str, total: int, batch_size: int, pause: float) -> int:
    """Idempotent batch writer for the kill test: rows keyed by id, upserted batch by batch (each batch
    its own transaction), a start logged per execution. Values are a pure function of the id."""
    if not table.isidentifier():
        raise PermanentError("bad table name")
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table}_starts (task_id, pid, redelivered) VALUES (%s, %s, %s)",  # noqa: S608
            [self.request.id, os.getpid(), redelivered],
        )
    written = 0
    with ingestion_run_record(job="tests.write_batches", task_id=self.request.id) as run:
        for start in range(0, total, batch_size):
            ids = list(range(start, min(total, start + batch_size)))
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    INSERT INTO {table} (id, value)
                    SELECT i, i * 7 + 1 FROM unnest(%s::int[]) AS i
                    ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value
                    WHERE {table}.value IS DISTINCT FROM EXCLUDED.value
                    """,  # noqa: S608 - table name checked above, values bound
                    [ids],
                )
                written += cursor.rowcount
            logger.info("batch %d..%d written", ids[0], ids[-1])
            time.sleep(pause)
        run.rows_written = written
    return written
