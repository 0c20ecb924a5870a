"""The one schedule registry: every app's SCHEDULES registered in django-celery-beat by
`manage.py setup_schedules`; beat rows of the tasks that moved follow them (jobs/0003, jobs/0005)."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from apiplatform.jobs.schedules import schedules_all

SCHEDULES = schedules_all()


@pytest.mark.django_db
def test_setup_schedules_is_idempotent_and_keeps_operator_edits():
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)
    refresh = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert refresh.interval.every == 60 and refresh.expire_seconds == 55
    assert PeriodicTask.objects.get(task="ingestion.sync_universe").crontab.hour == "3"

    refresh.enabled = False
    refresh.interval = None
    refresh.crontab = PeriodicTask.objects.get(task="ingestion.sync_universe").crontab
    refresh.save()
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)
    kept = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert kept.crontab is not None and kept.enabled is False

    call_command("setup_schedules", "--reset")
    restored = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert restored.interval.every == 60 and restored.crontab is None
    assert restored.enabled is False  # reset restores the schedule, not the operator's pause


def test_every_scheduled_task_is_registered():
    from apiplatform.celery import app

    app.loader.import_default_modules()
    for spec in SCHEDULES:
        assert spec.task in app.tasks, spec.task


@pytest.mark.django_db
def test_setup_schedules_registers_the_jobs_of_all_five_apps_once():
    tasks_before = PeriodicTask.objects.count()
    call_command("setup_schedules")
    registered = set(PeriodicTask.objects.values_list("task", flat=True))
    for task in (
        "ingestion.refresh_markets",
        "jobs.housekeeping",
        "marketdata.refresh_screener",
        "marketdata.maintain_partitions",
        "billing.flush_usage",
        "accounts.flush_key_last_used",
    ):
        assert task in registered, task
    assert not registered & {
        "ingestion.refresh_screener",
        "ingestion.maintain_partitions",
        "ingestion.housekeeping",
    }
    # the accounts row written by migration accounts/0004 is the same entry, not a second one
    assert PeriodicTask.objects.filter(task="accounts.flush_key_last_used").count() == 1
    count = PeriodicTask.objects.count()
    assert count == tasks_before + len(SCHEDULES) - 1
    call_command("setup_schedules")
    call_command("setup_schedules", "--reset")
    assert PeriodicTask.objects.count() == count
    assert {s.task.split(".")[0] for s in SCHEDULES} == {
        "accounts",
        "alerts",  # marketdata.alerts (app label alerts): due deliveries, pruning
        "billing",
        "marketdata",
        "ingestion",
        "jobs",
    }


def test_schedule_names_are_unique():
    names = [s.name for s in SCHEDULES]
    assert len(names) == len(set(names))


@pytest.mark.django_db
def test_beat_rename_migration_maps_the_moved_tasks_to_their_new_names():
    migration = importlib.import_module("apiplatform.jobs.migrations.0003_rename_beat_tasks")
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    old = {
        "old screener": ("ingestion.refresh_screener", {"timeframes": ["1m"]}),
        "old partitions": ("ingestion.maintain_partitions", {}),
        "untouched": ("ingestion.refresh_markets", {}),
    }
    for name, (task, kwargs) in old.items():
        PeriodicTask.objects.create(name=name, task=task, interval=every, kwargs=json.dumps(kwargs))
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": long_ago})

    migration.forwards(apps, None)

    renamed = dict(PeriodicTask.objects.filter(name__in=old).values_list("name", "task"))
    assert renamed == {
        "old screener": "marketdata.refresh_screener",
        "old partitions": "marketdata.maintain_partitions",
        "untouched": "ingestion.refresh_markets",
    }
    assert json.loads(PeriodicTask.objects.get(name="old screener").kwargs) == {"timeframes": ["1m"]}
    assert PeriodicTasks.last_change() > long_ago  # a running DatabaseScheduler reloads

    migration.backwards(apps, None)
    assert PeriodicTask.objects.get(name="old partitions").task == "ingestion.maintain_partitions"


def test_the_old_task_names_still_run_and_forward_to_the_new_tasks(monkeypatch):
    from apiplatform.celery import app
    from apiplatform.jobs import tasks as jobs_tasks
    from marketdata import tasks as marketdata_tasks

    app.loader.import_default_modules()
    cases = (
        ("ingestion.refresh_screener", marketdata_tasks.refresh_screener, {"timeframes": ["1h"]}),
        ("ingestion.maintain_partitions", marketdata_tasks.maintain_partitions, {}),
        ("ingestion.replay_dead_letters", jobs_tasks.replay_dead_letters, {"dead_letter_ids": [1]}),
        ("ingestion.housekeeping", jobs_tasks.housekeeping, {}),
    )
    for old, new, kwargs in cases:
        sent = mock.Mock()
        monkeypatch.setattr(new, "apply_async", sent)
        result = app.tasks[old].apply(kwargs=kwargs)
        assert result.successful(), result.traceback
        sent.assert_called_once()
        assert sent.call_args.kwargs.get("kwargs", {}) == kwargs


@pytest.mark.django_db
def test_housekeeping_beat_row_follows_the_task_to_jobs_keeping_the_operators_schedule():
    migration = importlib.import_module("apiplatform.jobs.migrations.0005_rename_housekeeping_beat")
    every, _ = IntervalSchedule.objects.get_or_create(every=3600, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="ingestion: housekeeping (hourly)", task="ingestion.housekeeping", interval=every, enabled=False
    )
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": long_ago})

    migration.forwards(apps, None)

    row = PeriodicTask.objects.get(task="jobs.housekeeping")
    assert row.name == "jobs: housekeeping (hourly)"  # the name setup_schedules uses: no second row
    assert row.interval == every and row.enabled is False
    assert PeriodicTasks.last_change() > long_ago
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(task="jobs.housekeeping").count() == 1

    migration.backwards(apps, None)
    row.refresh_from_db()
    assert (row.name, row.task) == ("ingestion: housekeeping (hourly)", "ingestion.housekeeping")
