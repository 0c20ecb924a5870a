"""Writes of the jobs app: run records (`job_run_record`, abandon, prune) and dead letters (record,
replay, resolve).

This module never imports the task base (`apiplatform.jobs.base` imports it), and never a feature
app: a replay sends the task by name through the Celery app."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apiplatform.celery import app as celery_app
from apiplatform.jobs.models import DeadLetter, JobRun

logger = logging.getLogger(__name__)

#: Header put on a replayed message so the task can report back to its dead letter.
DEAD_LETTER_HEADER = "dead_letter_id"


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
            self.details.update(jsonable(extra))
        self.details.update(jsonable(values))


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON-ready details: scalars kept, datetimes in ISO 8601, short lists kept (at
    most 100 items), mappings converted the same way, anything else as its (cut) repr."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[str(key)] = value
        elif isinstance(value, datetime):
            out[str(key)] = value.isoformat()
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
            out[str(key)] = list(value)[:100]
        elif isinstance(value, Mapping):
            out[str(key)] = jsonable(value)
        else:
            out[str(key)] = repr(value)[:500]
    return out


def job_run_start(*, job: str, task_id: str = "") -> JobRun:
    """Record that a job started (committed at once, so a run killed mid-way stays visible)."""
    return JobRun.objects.create(job=job, task_id=task_id or "", started_at=timezone.now())


def job_run_finish(
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
    run = JobRun.objects.get(pk=run_id)
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
def job_run_record(*, job: str, task_id: str = "") -> Iterator[RunStats]:
    """Record one run of ``job``: yields a `RunStats` to fill; on exit the run is finished as
    success, partial (``stats.partial`` set or rows rejected) or failed (the exception re-raised)."""
    run = job_run_start(job=job, task_id=task_id)
    stats = RunStats()
    started = time.monotonic()
    try:
        yield stats
    except BaseException as exc:
        job_run_finish(
            run_id=run.pk,
            outcome=JobRun.Outcome.FAILED,
            calls=stats.calls,
            rows_written=stats.rows_written,
            rejects=stats.rejects,
            details=stats.details,
            error=f"{type(exc).__name__}: {exc}",
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        raise
    outcome = JobRun.Outcome.PARTIAL if (stats.partial or stats.rejects) else JobRun.Outcome.SUCCESS
    job_run_finish(
        run_id=run.pk,
        outcome=outcome,
        calls=stats.calls,
        rows_written=stats.rows_written,
        rejects=stats.rejects,
        details=stats.details,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def job_runs_mark_abandoned(
    *, older_than: timedelta, job: str | None = None, now: datetime | None = None
) -> int:
    """Runs still 'running' after their task's hard time limit belong to a worker that died: say so."""
    now = now or timezone.now()
    qs = JobRun.objects.filter(outcome=JobRun.Outcome.RUNNING, started_at__lt=now - older_than)
    if job is not None:
        qs = qs.filter(job=job)
    return qs.update(
        outcome=JobRun.Outcome.ABANDONED, finished_at=now, error="worker lost (no finish recorded)"
    )


def job_runs_prune(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete run records that started more than ``older_than`` ago; returns how many."""
    now = now or timezone.now()
    deleted, _ = JobRun.objects.filter(started_at__lt=now - older_than).delete()
    return deleted


# --- dead letters ------------------------------------------------------------------------------------
class DeadLetterNotReplayable(Exception):
    pass


@transaction.atomic
def dead_letter_record(
    *,
    task_name: str,
    app: str,
    task_id: str,
    args: list,
    kwargs: dict,
    queue: str,
    exc: BaseException,
    traceback: str,
    attempts: int,
    retryable: bool,
    dead_letter_id: int | None = None,
) -> DeadLetter:
    """Write (or update) the dead letter of a task that gave up; ``app`` is the label of the Django
    app that owns the task.

    A failed replay updates its own dead letter (back to pending, attempts added up); a new failure
    of a task with the same name and arguments as a pending dead letter is added to that one
    (``last_failed_at`` moves, attempts add up) instead of piling up identical rows."""
    now = timezone.now()
    values = {
        "app": app,
        "task_id": task_id,
        "queue": queue,
        "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "error": f"{type(exc).__name__}: {exc}"[:10_000],
        "traceback": traceback[-50_000:],
        "retryable": retryable,
        "last_failed_at": now,
        "status": DeadLetter.Status.PENDING,
    }
    existing = None
    if dead_letter_id is not None:
        existing = DeadLetter.objects.select_for_update().filter(pk=dead_letter_id).first()
    if existing is None:
        existing = (
            DeadLetter.objects.select_for_update()
            .filter(task_name=task_name, args=args, kwargs=kwargs, status=DeadLetter.Status.PENDING)
            .order_by("pk")
            .first()
        )
    if existing is not None:
        for key, value in values.items():
            setattr(existing, key, value)
        existing.attempts += attempts
        existing.save()
        logger.error("dead letter %s updated: %s (attempts %d)", existing.pk, task_name, existing.attempts)
        return existing
    letter = DeadLetter.objects.create(
        task_name=task_name, args=args, kwargs=kwargs, attempts=attempts, first_failed_at=now, **values
    )
    logger.error("dead letter %s written: %s after %d attempt(s)", letter.pk, task_name, attempts)
    return letter


@transaction.atomic
def dead_letter_replay(*, dead_letter_id: int, force: bool = False) -> DeadLetter:
    """Enqueue the dead letter's task again, with its recorded arguments, once the current
    transaction commits. The letter becomes 'replayed'; if the replay fails for good it returns to
    'pending' (attempts added up); if it succeeds ``replay_succeeded_at`` is set.

    Only pending letters are replayed unless ``force`` (a replayed or resolved one can be sent again
    on purpose; tasks are idempotent, so a second replay does no harm)."""
    letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
    if letter.status != DeadLetter.Status.PENDING and not force:
        raise DeadLetterNotReplayable(f"dead letter {letter.pk} is {letter.status}, not pending")
    task_id = str(uuid.uuid4())
    letter.status = DeadLetter.Status.REPLAYED
    letter.replayed_at = timezone.now()
    letter.replay_count += 1
    letter.replay_task_id = task_id
    letter.replay_succeeded_at = None
    letter.save()
    transaction.on_commit(
        lambda: _send(letter.task_name, letter.args, letter.kwargs, letter.queue, task_id, letter.pk)
    )
    logger.info("dead letter %s replayed as task %s (%s)", letter.pk, task_id, letter.task_name)
    return letter


def dead_letters_replay(*, dead_letter_ids: Iterable[int], force: bool = False) -> tuple[int, int]:
    """Replay several dead letters; returns (replayed, skipped). Each is its own transaction."""
    replayed = skipped = 0
    for pk in dead_letter_ids:
        try:
            dead_letter_replay(dead_letter_id=pk, force=force)
        except (DeadLetter.DoesNotExist, DeadLetterNotReplayable):
            skipped += 1
        else:
            replayed += 1
    return replayed, skipped


def _send(task_name: str, args: list, kwargs: dict, queue: str, task_id: str, dead_letter_id: int) -> None:
    options: dict[str, Any] = {"task_id": task_id, "headers": {DEAD_LETTER_HEADER: dead_letter_id}}
    task = celery_app.tasks.get(task_name)
    if task is not None:
        # celery-types has `args: tuple` here (but `Sequence` for send_task below); Celery takes any
        # sequence, so the list stored in the dead letter is sent as it is.
        task.apply_async(args=args, kwargs=kwargs, **options)  # type: ignore[arg-type]  # stub too narrow
    else:  # not imported in this process: send by name to the recorded queue
        celery_app.send_task(task_name, args=args, kwargs=kwargs, queue=queue or None, **options)


def dead_letter_mark_succeeded(*, dead_letter_id: int) -> None:
    DeadLetter.objects.filter(pk=dead_letter_id).update(replay_succeeded_at=timezone.now())


def dead_letter_resolve(*, dead_letter_id: int, note: str = "") -> DeadLetter:
    """Close a dead letter without replaying it (e.g. superseded by a later run)."""
    letter = DeadLetter.objects.get(pk=dead_letter_id)
    letter.status = DeadLetter.Status.RESOLVED
    letter.resolved_at = timezone.now()
    if note:
        letter.note = note
    letter.save(update_fields=["status", "resolved_at", "note"])
    return letter
