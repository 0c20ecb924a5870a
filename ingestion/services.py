"""Writes of the ingestion app: run records and quality flags (dead letters: `apiplatform.jobs.services`)."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ingestion.models import IngestionRun, QualityFlag

logger = logging.getLogger(__name__)


# --- runs -------------------------------------------------------------------------------------------
@dataclass
class RunStats:
    """What a job did; a pipeline result is merged into it with `add`."""

    calls: int = 0
    rows_written: int = 0
    rejects: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    partial: bool = False

    def add(self, result: Any) -> None:
        """Merge a pipeline result: an object or mapping with any of ``calls``, ``rows_written``,
        ``rejects`` (numbers) and ``details`` (a dict); other public fields go to ``details``."""
        if result is None:
            return
        if isinstance(result, Mapping):
            values = dict(result)
        elif hasattr(result, "__dict__") or hasattr(result, "__slots__"):
            values = {
                name: getattr(result, name)
                for name in (getattr(result, "__slots__", None) or vars(result))
                if not name.startswith("_")
            }
        else:
            self.details.setdefault("result", repr(result))
            return
        for key in ("calls", "rows_written", "rejects"):
            value = values.pop(key, None)
            if isinstance(value, int | float):
                setattr(self, key, getattr(self, key) + int(value))
        extra = values.pop("details", None)
        if isinstance(extra, Mapping):
            self.details.update(_jsonable(extra))
        self.details.update(_jsonable(values))


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[str(key)] = value
        elif isinstance(value, datetime):
            out[str(key)] = value.isoformat()
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
            out[str(key)] = list(value)[:100]
        elif isinstance(value, Mapping):
            out[str(key)] = _jsonable(value)
        else:
            out[str(key)] = repr(value)[:500]
    return out


def ingestion_run_start(*, job: str, task_id: str = "") -> IngestionRun:
    """Record that a job started (committed at once, so a run killed mid-way stays visible)."""
    return IngestionRun.objects.create(job=job, task_id=task_id or "", started_at=timezone.now())


def ingestion_run_finish(
    *,
    run_id: int,
    outcome: str,
    calls: int = 0,
    rows_written: int = 0,
    rejects: int = 0,
    details: dict[str, Any] | None = None,
    error: str = "",
    duration_ms: int | None = None,
) -> None:
    now = timezone.now()
    run = IngestionRun.objects.get(pk=run_id)
    run.finished_at = now
    run.duration_ms = (
        duration_ms if duration_ms is not None else int((now - run.started_at).total_seconds() * 1000)
    )
    run.outcome = outcome
    run.calls = calls
    run.rows_written = rows_written
    run.rejects = rejects
    run.details = details or {}
    run.error = error[:10_000]
    run.save()


@contextlib.contextmanager
def ingestion_run_record(*, job: str, task_id: str = "") -> Iterator[RunStats]:
    """Record one run of ``job``: yields a `RunStats` to fill; on exit the run is finished as
    success, partial (``stats.partial`` set or rows rejected) or failed (the exception re-raised)."""
    run = ingestion_run_start(job=job, task_id=task_id)
    stats = RunStats()
    started = time.monotonic()
    try:
        yield stats
    except BaseException as exc:
        ingestion_run_finish(
            run_id=run.pk,
            outcome=IngestionRun.Outcome.FAILED,
            calls=stats.calls,
            rows_written=stats.rows_written,
            rejects=stats.rejects,
            details=stats.details,
            error=f"{type(exc).__name__}: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        raise
    outcome = (
        IngestionRun.Outcome.PARTIAL if (stats.partial or stats.rejects) else IngestionRun.Outcome.SUCCESS
    )
    ingestion_run_finish(
        run_id=run.pk,
        outcome=outcome,
        calls=stats.calls,
        rows_written=stats.rows_written,
        rejects=stats.rejects,
        details=stats.details,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def ingestion_runs_mark_abandoned(
    *, older_than: timedelta, job: str | None = None, now: datetime | None = None
) -> int:
    """Runs still 'running' after their task's hard time limit belong to a worker that died: say so."""
    now = now or timezone.now()
    qs = IngestionRun.objects.filter(outcome=IngestionRun.Outcome.RUNNING, started_at__lt=now - older_than)
    if job is not None:
        qs = qs.filter(job=job)
    return qs.update(
        outcome=IngestionRun.Outcome.ABANDONED, finished_at=now, error="worker lost (no finish recorded)"
    )


def ingestion_runs_prune(*, older_than: timedelta, now: datetime | None = None) -> int:
    now = now or timezone.now()
    deleted, _ = IngestionRun.objects.filter(started_at__lt=now - older_than).delete()
    return deleted


# --- quality flags -------------------------------------------------------------------------------------
@transaction.atomic
def quality_flag_raise(
    *,
    coin_id: int,
    timeframe: str,
    kind: str,
    range_start: datetime,
    range_end: datetime,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[QualityFlag, bool]:
    """Record a finding: the open flag of (coin, timeframe, kind, range start) is updated (its range
    may have grown), or a new one is created. Returns (flag, created)."""
    now = now or timezone.now()
    flag = (
        QualityFlag.objects.select_for_update()
        .filter(coin_id=coin_id, timeframe=timeframe, kind=kind, range_start=range_start, resolved_at=None)
        .first()
    )
    if flag is None:
        flag = QualityFlag.objects.create(
            coin_id=coin_id,
            timeframe=timeframe,
            kind=kind,
            range_start=range_start,
            range_end=range_end,
            details=details or {},
            detected_at=now,
            last_seen_at=now,
        )
        logger.warning(
            "quality flag %s: %s %s %s [%s, %s)", flag.pk, kind, coin_id, timeframe, range_start, range_end
        )
        return flag, True
    flag.range_end = max(flag.range_end, range_end)
    flag.details = {**flag.details, **(details or {})}
    flag.last_seen_at = now
    flag.save(update_fields=["range_end", "details", "last_seen_at"])
    return flag, False


def quality_flag_resolve(
    *, flag_id: int, resolution: str = "resolved by operator", now: datetime | None = None
):
    return QualityFlag.objects.filter(pk=flag_id, resolved_at=None).update(
        resolved_at=now or timezone.now(), resolution=resolution[:200]
    )


@transaction.atomic
def quality_flag_schedule_refetch(*, flag_id: int, now: datetime | None = None) -> QualityFlag:
    """Enqueue `ingestion.refetch_range` for the flag (after commit); the task re-fetches exactly the
    flag's range through the pipeline's backfill."""
    flag = QualityFlag.objects.select_for_update().get(pk=flag_id)
    task_id = str(uuid.uuid4())
    flag.refetch_scheduled_at = now or timezone.now()
    flag.refetch_task_id = task_id
    flag.refetch_count += 1
    flag.refetch_finished_at = None
    flag.save(
        update_fields=["refetch_scheduled_at", "refetch_task_id", "refetch_count", "refetch_finished_at"]
    )

    def send() -> None:
        from ingestion.tasks import refetch_range

        refetch_range.apply_async(kwargs={"flag_id": flag.pk}, task_id=task_id)

    transaction.on_commit(send)
    return flag


def quality_flag_refetch_finished(*, flag_id: int, details: dict[str, Any] | None = None) -> None:
    flag = QualityFlag.objects.get(pk=flag_id)
    flag.refetch_finished_at = timezone.now()
    if details:
        flag.details = {**flag.details, "refetch": _jsonable(details)}
    flag.save(update_fields=["refetch_finished_at", "details"])
