"""Dead letters: tasks that gave up, recorded with enough to replay them.

The table is still ``ingestion_deadletter`` (the model moved here from ``ingestion`` without moving
its rows: see ``jobs/0001``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
