"""Run records of the jobs (apiplatform.jobs.services.job_run_record)."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from apiplatform.jobs import services
from apiplatform.jobs import tasks as jobs_tasks
from apiplatform.jobs.models import JobRun


@pytest.mark.django_db
def test_run_record_marks_failures_and_partial_runs():
    with pytest.raises(RuntimeError), services.job_run_record(job="j", task_id="t1") as run:
        run.calls = 3
        raise RuntimeError("upstream exploded")
    failed = JobRun.objects.get(task_id="t1")
    assert failed.outcome == JobRun.Outcome.FAILED
    assert failed.calls == 3
    assert "upstream exploded" in failed.error
    assert failed.finished_at is not None

    with services.job_run_record(job="j", task_id="t2") as run:
        run.add({"calls": 2, "rows_written": 10, "rejects": 1, "coins": 5})
        run.add({"calls": 1, "rows_written": 5})
    partial = JobRun.objects.get(task_id="t2")
    assert (partial.calls, partial.rows_written, partial.rejects) == (3, 15, 1)
    assert partial.outcome == JobRun.Outcome.PARTIAL
    assert partial.details == {"coins": 5}


@pytest.mark.django_db
def test_housekeeping_marks_runs_of_lost_workers_abandoned_and_prunes_old_ones():
    from datetime import timedelta

    from django.utils import timezone

    from apiplatform.celery import app

    app.loader.import_default_modules()  # as in a worker: every app's tasks (and time limits) known
    now = timezone.now()
    lost = JobRun.objects.create(job="ingestion.refresh_markets", started_at=now - timedelta(minutes=3))
    live = JobRun.objects.create(job="ingestion.refresh_markets", started_at=now - timedelta(seconds=5))
    # a backfill may run for most of an hour (its time limit): 30 minutes is not abandoned
    long = JobRun.objects.create(job="ingestion.backfill", started_at=now - timedelta(minutes=30))
    ancient = JobRun.objects.create(job="j", outcome="success", started_at=now - timedelta(days=400))
    result = jobs_tasks.housekeeping.apply()
    assert result.successful(), result.traceback
    lost.refresh_from_db()
    live.refresh_from_db()
    assert lost.outcome == "abandoned"
    assert live.outcome == "running"
    long.refresh_from_db()
    assert long.outcome == "running"
    assert not JobRun.objects.filter(pk=ancient.pk).exists()


def test_job_run_keeps_the_table_and_indexes_of_ingestion_run():
    """The model moved without moving its rows: same table and index names, in the migration state
    too, and neither migration touches the database schema."""
    assert JobRun._meta.db_table == "ingestion_ingestionrun"
    assert {index.name for index in JobRun._meta.indexes} == {
        "ingestion_run_job_started",
        "ingestion_run_outcome_started",
    }
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state()
    assert state.models["jobs", "jobrun"].options["db_table"] == "ingestion_ingestionrun"
    assert ("ingestion", "ingestionrun") not in state.models
    for key in (("jobs", "0004_jobrun"), ("ingestion", "0004_move_ingestionrun_to_jobs")):
        moved = loader.graph.nodes[key].operations[0]
        assert moved.database_operations == [], key


@pytest.mark.django_db
def test_existing_runs_are_read_as_job_runs():
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingestion_ingestionrun (job, task_id, started_at, calls, rows_written, rejects,"
            " outcome, error, details) VALUES ('ingestion.refresh_markets', 'old', now(), 1, 2, 0,"
            " 'success', '', '{}')"
        )
    run = JobRun.objects.get(task_id="old")
    assert (run.job, run.rows_written, run.outcome) == ("ingestion.refresh_markets", 2, "success")


@pytest.mark.django_db
def test_migration_moves_the_content_type_and_the_permissions_granted_on_runs():
    migration = importlib.import_module("apiplatform.jobs.migrations.0004_jobrun")
    ContentType.objects.filter(app_label="jobs", model="jobrun").delete()  # as before the migration
    old = ContentType.objects.create(app_label="ingestion", model="ingestionrun")
    Permission.objects.create(content_type=old, codename="view_ingestionrun", name="Can view ingestion run")

    migration.move_content_type(apps, None)

    moved = ContentType.objects.get(pk=old.pk)
    assert (moved.app_label, moved.model) == ("jobs", "jobrun")
    assert Permission.objects.get(content_type=moved).codename == "view_jobrun"

    migration.move_content_type_back(apps, None)
    moved.refresh_from_db()
    assert (moved.app_label, moved.model) == ("ingestion", "ingestionrun")
    assert Permission.objects.get(content_type=moved).codename == "view_ingestionrun"
