"""The one registry of periodic jobs, registered in django-celery-beat by `manage.py setup_schedules`
(so operators can change or pause them in the admin: Periodic tasks → Periodic tasks).

Each installed app declares its own jobs beside its tasks, in ``<app>/schedules.py``::

    from apiplatform.jobs.schedules import Schedule

    SCHEDULES = (Schedule("billing: usage flush (every minute)", "billing.flush_usage", every_seconds=60),)

`schedules_all()` collects them in ``INSTALLED_APPS`` order; no app is named here. The jobs app's
own jobs are in ``SCHEDULES`` below (this module is its ``schedules`` module)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils.module_loading import module_has_submodule
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

MODULE_NAME = "schedules"


@dataclass(frozen=True)
class Schedule:
    name: str  # the PeriodicTask name shown in the admin
    task: str
    every_seconds: int | None = None
    crontab: dict[str, str] | None = None  # minute, hour, day_of_week, day_of_month, month_of_year
    kwargs: dict[str, Any] = field(default_factory=dict)
    expire_seconds: int | None = None
    description: str = ""


#: The jobs app's own periodic jobs (apiplatform.jobs.tasks).
SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "jobs: housekeeping (hourly)",
        "jobs.housekeeping",
        crontab={"minute": "37"},
        description="Marks runs of lost workers abandoned; prunes old run records.",
    ),
)


def schedules_all() -> tuple[Schedule, ...]:
    """Every ``SCHEDULES`` declared in an installed app's ``schedules`` module, in app order.
    Two schedules with the same name are a configuration error."""
    found: list[Schedule] = []
    for config in apps.get_app_configs():
        if not module_has_submodule(config.module, MODULE_NAME):
            continue
        module = import_module(f"{config.name}.{MODULE_NAME}")
        found.extend(vars(module).get("SCHEDULES", ()))  # an app's module may declare none
    names = [spec.name for spec in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ImproperlyConfigured(f"schedules declared twice: {', '.join(duplicates)}")
    return tuple(found)


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
    report: dict[str, list[str]] = {"created": [], "reset": [], "kept": []}
    for spec in schedules_all():
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
