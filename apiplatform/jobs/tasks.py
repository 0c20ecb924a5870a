"""Tasks of the jobs app: housekeeping of run records, bulk replay of dead letters from a worker.

Schedules: ``SCHEDULES`` in `apiplatform.jobs.schedules` (``manage.py setup_schedules``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings

from apiplatform.jobs.base import QUEUE_DEFAULT, project_task
from apiplatform.jobs.models import JobRun
from apiplatform.jobs.services import (
    dead_letter_replay,
    job_run_record,
    job_runs_mark_abandoned,
    job_runs_prune,
)

logger = logging.getLogger(__name__)


@project_task(name="jobs.housekeeping", queue=QUEUE_DEFAULT, soft_time_limit=240, time_limit=300)
def housekeeping(self) -> dict[str, Any]:
    """Mark runs of lost workers 'abandoned'; delete run records past their retention."""
    keep = timedelta(days=settings.INGESTION_RUN_RETENTION_DAYS)
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        abandoned = 0
        running_jobs = JobRun.objects.filter(outcome=JobRun.Outcome.RUNNING)
        for job in running_jobs.values_list("job", flat=True).distinct():
            task = self.app.tasks.get(job)
            limit = getattr(task, "time_limit", None) or settings.CELERY_TASK_TIME_LIMIT
            # a run older than its task's hard time limit (plus a margin) cannot still be running
            abandoned += job_runs_mark_abandoned(older_than=timedelta(seconds=limit + 60), job=job)
        run.details["abandoned"] = abandoned
        run.details["pruned"] = job_runs_prune(older_than=keep)
    return run.details


@project_task(name="jobs.replay_dead_letters", queue=QUEUE_DEFAULT, max_retries=0)
def replay_dead_letters(self, dead_letter_ids: list[int]) -> int:
    """Replay many dead letters from a worker (the admin's bulk action for very large selections)."""
    replayed = 0
    for pk in dead_letter_ids:
        try:
            dead_letter_replay(dead_letter_id=pk)
            replayed += 1
        except Exception:
            logger.exception("dead letter %s not replayed", pk)
    return replayed


# DEPRECATED, remove in the release after the one that renamed them (issue 11): the tasks' old names
# in ingestion, kept so messages already queued under them still run; they forward to the new tasks.
# Beat rows were renamed by migration jobs/0005 (housekeeping).
@project_task(name="ingestion.housekeeping", queue=QUEUE_DEFAULT, max_retries=0)
def housekeeping_old_name(self) -> None:
    housekeeping.apply_async()


@project_task(name="ingestion.replay_dead_letters", queue=QUEUE_DEFAULT, max_retries=0)
def replay_dead_letters_old_name(self, dead_letter_ids: list[int]) -> None:
    replay_dead_letters.apply_async(kwargs={"dead_letter_ids": dead_letter_ids})
