"""Celery tasks of the billing app.

``billing.flush_usage`` moves metered usage from Redis into PostgreSQL (billing.metering). Celery
beat runs it every ``BILLING_USAGE_FLUSH_SECONDS`` (default 60 s; declared in ``billing.schedules``).
Overlapping, repeated or killed runs are safe: each batch is applied exactly once, and a failed run
leaves its batch pending for the next one (hence no retries and no dead letter here).
"""

from __future__ import annotations

from apiplatform.jobs.base import project_task
from billing import metering


@project_task(
    name="billing.flush_usage", soft_time_limit=240, time_limit=300, max_retries=0, dead_letter=False
)
def flush_usage(self) -> dict:
    result = metering.usage_flush()
    return {"applied": result.applied, "skipped": result.skipped, "requests": result.requests}
