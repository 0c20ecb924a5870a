"""The periodic jobs of the pipeline, registered in django-celery-beat by `manage.py setup_schedules`
(so operators can change or pause them in the admin: Periodic tasks → Periodic tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask


@dataclass(frozen=True)
class Schedule:
    name: str  # the PeriodicTask name shown in the admin
    task: str
    every_seconds: int | None = None
    crontab: dict[str, str] | None = None  # minute, hour, day_of_week, day_of_month, month_of_year
    kwargs: dict[str, Any] = field(default_factory=dict)
    expire_seconds: int | None = None
    description: str = ""


SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "ingestion: refresh markets (every minute)",
        "ingestion.refresh_markets",
        every_seconds=60,
        expire_seconds=55,
        description="Snapshots, ticks and current 1m candles for the whole universe; roll-ups.",
    ),
    Schedule(
        "ingestion: roll-up catch-up (every 5 minutes)",
        "ingestion.rollup_candles",
        every_seconds=300,
        kwargs={"minutes": 30},
        expire_seconds=290,
        description="Recomputes 5m..1d from the last 30 minutes of 1m candles (unchanged rows untouched).",
    ),
    Schedule(
        "ingestion: data-quality check (every 5 minutes)",
        "ingestion.quality_check",
        every_seconds=300,
        expire_seconds=290,
        description="Missing buckets, implausible jumps, stale coins; schedules exact-range re-fetches.",
    ),
    Schedule(
        "marketdata: screener 1m/5m (every minute)",
        "ingestion.refresh_screener",
        every_seconds=60,
        kwargs={"timeframes": ["1m", "5m"]},
        expire_seconds=55,
        description="Latest indicators of every coin for /v1/screener, after the minute's roll-ups.",
    ),
    Schedule(
        "marketdata: screener 15m/1h/1d (every 5 minutes)",
        "ingestion.refresh_screener",
        every_seconds=300,
        kwargs={"timeframes": ["15m", "1h", "1d"]},
        expire_seconds=290,
        description="Latest indicators of the slower timeframes for /v1/screener.",
    ),
    Schedule(
        "billing: usage flush (every minute)",
        "billing.flush_usage",
        every_seconds=settings.BILLING_USAGE_FLUSH_SECONDS,
        description="Moves metered usage counters from Redis to PostgreSQL (exactly once).",
    ),
    Schedule(
        "ingestion: coin universe sync (daily)",
        "ingestion.sync_universe",
        crontab={"minute": "17", "hour": "3"},
        description="New coins added, delisted ones marked inactive.",
    ),
    Schedule(
        "marketdata: candle partitions (hourly)",
        "ingestion.maintain_partitions",
        crontab={"minute": "7"},
        description="Creates candle partitions ahead, drops the ones past retention.",
    ),
    Schedule(
        "ingestion: housekeeping (hourly)",
        "ingestion.housekeeping",
        crontab={"minute": "37"},
        description="Marks runs of lost workers abandoned; prunes old run records.",
    ),
)


def _schedule_fields(spec: Schedule) -> dict[str, Any]:
    if spec.every_seconds is not None:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=spec.every_seconds, period=IntervalSchedule.SECONDS
        )
        return {"interval": interval, "crontab": None}
    cron = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
    cron.update(spec.crontab or {})
    crontab, _ = CrontabSchedule.objects.get_or_create(**cron, timezone="UTC")
    return {"crontab": crontab, "interval": None}


@transaction.atomic
def schedules_setup(*, reset: bool = False) -> dict[str, list[str]]:
    """Create the periodic tasks that do not exist yet. Existing ones (possibly edited or disabled by
    an operator) are left alone unless ``reset``, which restores task, schedule and arguments (the
    enabled flag is kept). Idempotent."""
    import json

    report: dict[str, list[str]] = {"created": [], "reset": [], "kept": []}
    for spec in SCHEDULES:
        values = {
            "task": spec.task,
            "kwargs": json.dumps(spec.kwargs),
            "expire_seconds": spec.expire_seconds,
            "description": spec.description,
            **_schedule_fields(spec),
        }
        existing = PeriodicTask.objects.filter(name=spec.name).first()
        if existing is None:
            PeriodicTask.objects.create(name=spec.name, **values)
            report["created"].append(spec.name)
        elif reset:
            for key, value in values.items():
                setattr(existing, key, value)
            existing.save()
            report["reset"].append(spec.name)
        else:
            report["kept"].append(spec.name)
    return report
