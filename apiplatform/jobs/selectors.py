"""Reads of the jobs app for operators (``manage.py doctor``, the metrics, the admin's operations
console): dead letters waiting, the last tick of celery beat, the schedules' last runs, failed runs."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, Max, Min
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apiplatform.jobs.models import DeadLetter, JobRun
from apiplatform.jobs.schedules import schedules_all

#: Schedules at least this frequent tell whether beat is alive (every-minute jobs).
BEAT_PROBE_EVERY_SECONDS = 60


class DeadLetterGroup(NamedTuple):
    app: str
    task_name: str
    waiting: int
    oldest: datetime


def dead_letters_waiting() -> list[DeadLetterGroup]:
    """Dead letters waiting for an operator (status pending), grouped by app and task, most first
    (1 query)."""
    rows = (
        DeadLetter.objects.filter(status=DeadLetter.Status.PENDING)
        .values("app", "task_name")
        .annotate(waiting=Count("id"), oldest=Min("first_failed_at"))
        .order_by("-waiting", "app", "task_name")
    )
    return [DeadLetterGroup(r["app"], r["task_name"], r["waiting"], r["oldest"]) for r in rows]


def dead_letters_by_status() -> list[tuple[str, str, str, int]]:
    """Every dead letter counted by owning app, task and status: ``(app, task, status, n)`` (1 query;
    ``GET /metrics``)."""
    rows = DeadLetter.objects.values_list("app", "task_name", "status").annotate(n=Count("pk")).order_by()
    return [(app, task, status, n) for app, task, status, n in rows]


class BeatTick(NamedTuple):
    schedules: int  # enabled schedules running at least every BEAT_PROBE_EVERY_SECONDS
    last_run_at: datetime | None  # the newest time beat sent one of them (None: never)


def beat_last_tick() -> BeatTick:
    """When celery beat last sent one of the enabled every-minute schedules (1 query).

    django-celery-beat's DatabaseScheduler writes ``last_run_at`` when it syncs (every 3 minutes, and
    when it stops), so a live beat's tick is at most a few minutes old."""
    seconds = {
        IntervalSchedule.MICROSECONDS: 1e-6,
        IntervalSchedule.SECONDS: 1,
        IntervalSchedule.MINUTES: 60,
        IntervalSchedule.HOURS: 3600,
        IntervalSchedule.DAYS: 86400,
    }
    tasks = PeriodicTask.objects.filter(enabled=True, interval__isnull=False).values_list(
        "interval__every", "interval__period", "last_run_at"
    )
    frequent = [
        last
        for every, period, last in tasks
        if every * seconds.get(period, 10**9) <= BEAT_PROBE_EVERY_SECONDS
    ]
    stamps = [last for last in frequent if last is not None]
    return BeatTick(len(frequent), max(stamps) if stamps else None)


class ScheduleState(NamedTuple):
    name: str  # the PeriodicTask name
    task: str
    enabled: bool | None  # None: not set up in django_celery_beat (manage.py setup_schedules)
    sent_at: datetime | None  # when beat last sent it (django_celery_beat last_run_at)
    last_run: JobRun | None  # the newest recorded run of its task (jobs that record runs only)


def schedules_state() -> list[ScheduleState]:
    """Every declared schedule with beat's last send and the newest run of its task (2 queries: one
    PeriodicTask read, one DISTINCT ON over the (job, -started_at) index)."""
    specs = schedules_all()
    beat = {
        name: (enabled, last)
        for name, enabled, last in PeriodicTask.objects.filter(name__in=[s.name for s in specs]).values_list(
            "name", "enabled", "last_run_at"
        )
    }
    runs = {
        run.job: run
        for run in JobRun.objects.filter(job__in={s.task for s in specs})
        .order_by("job", "-started_at")
        .distinct("job")
        .defer("details")
    }
    out = []
    for spec in specs:
        enabled, sent_at = beat.get(spec.name, (None, None))
        out.append(ScheduleState(spec.name, spec.task, enabled, sent_at, runs.get(spec.task)))
    return out


def jobs_last_success(*, jobs: list[str]) -> dict[str, datetime]:
    """When the newest successful run of each of ``jobs`` finished (jobs without one are left out)
    (1 query)."""
    finished = (
        JobRun.objects.filter(job__in=jobs, outcome=JobRun.Outcome.SUCCESS, finished_at__isnull=False)
        .values_list("job")
        .annotate(at=Max("finished_at"))
        .order_by()
    )
    return dict(finished)


def job_runs_failed(*, since: datetime, limit: int = 50) -> tuple[int, list[JobRun]]:
    """Runs that started at or after ``since`` and failed or were abandoned: (how many, the newest
    ``limit``) (2 queries over the (outcome, -started_at) index)."""
    qs = JobRun.objects.filter(
        outcome__in=[JobRun.Outcome.FAILED, JobRun.Outcome.ABANDONED], started_at__gte=since
    ).defer("details")
    return qs.count(), list(qs.order_by("-started_at")[:limit])


def dead_letters_pending(*, limit: int = 100) -> list[DeadLetter]:
    """The pending dead letters, oldest failure first (1 query, at most ``limit``)."""
    return list(
        DeadLetter.objects.filter(status=DeadLetter.Status.PENDING)
        .defer("traceback", "args", "kwargs")
        .order_by("first_failed_at", "pk")[:limit]
    )
