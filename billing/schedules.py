"""The periodic jobs of billing, collected by `apiplatform.jobs.schedules` for setup_schedules."""

from __future__ import annotations

from django.conf import settings

from apiplatform.jobs.schedules import Schedule

SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "billing: usage flush (every minute)",
        "billing.flush_usage",
        every_seconds=settings.BILLING_USAGE_FLUSH_SECONDS,
        description="Moves metered usage counters from Redis to PostgreSQL (exactly once).",
    ),
)
