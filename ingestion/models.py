"""Operational records of the ingestion pipeline: data-quality flags, and the history job's progress
(a view of marketdata's series watermarks).

Every data-quality finding is a `QualityFlag` that stays visible until it is resolved. (The run of
every periodic job is an `apiplatform.jobs.models.JobRun`; a task that gives up writes a
`apiplatform.jobs.models.DeadLetter`.)
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from marketdata.models import SeriesWatermark


class QualityFlag(models.Model):
    """A data-quality finding on one coin's series, visible until resolved (by a later check that
    finds the range good again, or by an operator)."""

    class Kind(models.TextChoices):
        MISSING = "missing", "missing buckets"
        JUMP = "jump", "implausible jump"
        STALE = "stale", "stale coin"

    coin = models.ForeignKey("marketdata.Coin", on_delete=models.CASCADE, related_name="quality_flags")
    timeframe = models.CharField(max_length=3)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    range_start = models.DateTimeField(help_text="First bucket start of the affected range.")
    range_end = models.DateTimeField(help_text="End of the affected range (exclusive).")
    details = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, help_text="Last check that still found it.")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=200, blank=True, default="")
    refetch_scheduled_at = models.DateTimeField(null=True, blank=True)
    refetch_task_id = models.CharField(max_length=255, blank=True, default="")
    refetch_count = models.PositiveIntegerField(default=0)
    refetch_finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["coin", "timeframe", "kind", "range_start"],
                condition=models.Q(resolved_at__isnull=True),
                name="quality_flag_one_open_per_range",
            )
        ]
        indexes = [
            models.Index(fields=["kind", "-detected_at"], name="quality_flag_kind_detected"),
            models.Index(
                fields=["-detected_at"],
                condition=models.Q(resolved_at__isnull=True),
                name="quality_flag_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.coin_id} {self.timeframe} {self.range_start:%Y-%m-%d %H:%M}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class HistoryProgress(SeriesWatermark):
    """The history job's watermarks (source ``history``) as the admin shows them: per coin and
    timeframe, how far back the fill reached and what is left (``ingestion.history``)."""

    class Meta:
        proxy = True
        verbose_name = "history progress"
        verbose_name_plural = "history progress"
