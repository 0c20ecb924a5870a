"""Tasks used only by the tests: imported by the test process and by the real worker subprocesses
(``celery worker -I tests.ingestion_tasks.worker_tasks``). They are built with the production
decorator, so they exercise the real retry taxonomy, dead-lettering, logging and acks_late."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.core.cache import cache

from apiplatform.jobs.base import QUEUE_INGESTION, PermanentError, RetryableError, project_task
from apiplatform.jobs.services import job_run_record
from marketdata.services import CandleRow, candles_upsert

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
    with job_run_record(job=f"tests.transient_until_healed:{key}", task_id=self.request.id) as run:
        run.rows_written = rows
    return rows


@project_task(name="tests.flaky", queue=QUEUE_INGESTION, max_retries=3, **FAST_BACKOFF)
def flaky(self, key: str, fail_times: int) -> int:
    """Fails with a connection error ``fail_times`` times, then succeeds and records a run."""
    attempt = _count_attempt(key)
    if attempt <= fail_times:
        raise ConnectionError(f"connection reset (attempt {attempt})")
    with job_run_record(job=f"tests.flaky:{key}", task_id=self.request.id) as run:
        run.details["attempt"] = attempt
    return attempt


@project_task(name="tests.permanent", queue=QUEUE_INGESTION, max_retries=3, **FAST_BACKOFF)
def permanent(self, key: str, reason: str = "bad input") -> None:
    _count_attempt(key)
    if reason == "value":
        raise ValueError(f"cannot parse {key}")
    raise PermanentError(f"{reason} for {key}")


STARTS_KEY = "h6-test:starts"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def candle_values(i: int) -> tuple[float, float, float, float]:
    """Deterministic OHLC of bucket i (the truth the kill test compares against)."""
    base = 100.0 + i * 0.01
    return base, base + 0.5, base - 0.5, base + 0.2


def starts() -> list[tuple[str, int, bool]]:
    """(task id, pid, redelivered) of every execution of write_candle_batches, in order."""
    raw = redis.Redis.from_url(settings.REDIS_URL).lrange(STARTS_KEY, 0, -1)
    out = []
    for item in raw:
        task_id, pid, redelivered = item.decode().split("|")
        out.append((task_id, int(pid), redelivered == "1"))
    return out


@project_task(name="tests.write_candle_batches", queue=QUEUE_INGESTION, max_retries=0)
def write_candle_batches(self, coin_id: int, total: int, batch_size: int, pause: float) -> int:
    """Idempotent batch writer for the kill test: 1m candles T0 + i minutes through the real write
    path (marketdata.services.candles_upsert), one transaction per batch, values a pure function of i."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    redis.Redis.from_url(settings.REDIS_URL).rpush(
        STARTS_KEY, f"{self.request.id}|{os.getpid()}|{int(redelivered)}"
    )
    with job_run_record(job="tests.write_candle_batches", task_id=self.request.id) as run:
        for start in range(0, total, batch_size):
            rows = [
                CandleRow(coin_id, "1m", T0 + timedelta(minutes=i), *candle_values(i), None, 1e6)
                for i in range(start, min(total, start + batch_size))
            ]
            result = candles_upsert(rows=rows, source="test")
            run.rows_written += result.written
            run.details["unchanged"] = run.details.get("unchanged", 0) + result.unchanged
            logger.info("candles %d..%d: %s", start, start + len(rows) - 1, result.as_dict())
            time.sleep(pause)
    return run.rows_written
