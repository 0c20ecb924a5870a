"""Records of the jobs: the run of a job (`JobRun`) and the dead letter of a task that gave up
(`DeadLetter`, recorded with enough to replay it).

Both moved here from ``ingestion`` without moving their rows: the tables are still
``ingestion_ingestionrun`` and ``ingestion_deadletter`` (see ``jobs/0001`` and ``jobs/0004``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class JobRun(models.Model):
    """One execution of a periodic job (or of a task that records runs): what it did and how it ended.

    Written by `apiplatform.jobs.services.job_run_record`; committed when the run starts, so a run
    whose worker died stays visible (``jobs.housekeeping`` later marks it abandoned)."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "running"
        SUCCESS = "success", "success"
        PARTIAL = "partial", "partial (some rows rejected or some calls failed)"
        FAILED = "failed", "failed"
        ABANDONED = "abandoned", "abandoned (worker lost before finishing)"

    job = models.CharField(max_length=100, help_text="Job name: the task's name, e.g. <app>.<task>.")
    task_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    calls = models.PositiveIntegerField(default=0, help_text="Upstream HTTP calls made.")
    rows_written = models.PositiveBigIntegerField(default=0)
    rejects = models.PositiveIntegerField(default=0, help_text="Input rows rejected by validation.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "ingestion_ingestionrun"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["job", "-started_at"], name="ingestion_run_job_started"),
            models.Index(fields=["outcome", "-started_at"], name="ingestion_run_outcome_started"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"


class DeadLetter(models.Model):
    """A task that exhausted its retries or failed with a non-retryable error: replayable as recorded."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        REPLAYED = "replayed", "replayed"
        RESOLVED = "resolved", "resolved"

    task_name = models.CharField(max_length=200)
    app = models.CharField(
        max_length=100, blank=True, default="", help_text="Label of the Django app that owns the task."
    )
    task_id = models.CharField(max_length=255, blank=True, default="", help_text="Last failing task id.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100, blank=True, default="")
    exception_type = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    retryable = models.BooleanField(
        default=False, help_text="Whether the last error was retryable (retries ran out) or permanent."
    )
    attempts = models.PositiveIntegerField(default=1, help_text="Executions that failed, replays included.")
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    replay_count = models.PositiveIntegerField(default=0)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_task_id = models.CharField(max_length=255, blank=True, default="")
    replay_succeeded_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        db_table = "ingestion_deadletter"
        ordering = ["-last_failed_at"]
        indexes = [
            models.Index(fields=["status", "-last_failed_at"], name="ingestion_dl_status_failed"),
            models.Index(fields=["task_name", "-last_failed_at"], name="ingestion_dl_task_failed"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} #{self.pk} ({self.status})"
