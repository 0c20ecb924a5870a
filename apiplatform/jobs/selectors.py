"""Reads of the jobs app for operators (``manage.py doctor``, the metrics): dead letters waiting and
the last tick of celery beat."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db.models import Count, Min
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apiplatform.jobs.models import DeadLetter

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
