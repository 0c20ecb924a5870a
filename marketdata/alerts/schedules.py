"""The periodic jobs of alerts, collected by `apiplatform.jobs.schedules` for setup_schedules."""

from __future__ import annotations

from apiplatform.jobs.schedules import Schedule

SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "alerts: webhook retries due (every 15 seconds)",
        "alerts.dispatch_due",
        every_seconds=15,
        expire_seconds=14,
        description="Sends the webhook deliveries whose next attempt is due (retries with backoff).",
    ),
    Schedule(
        "alerts: prune old deliveries (daily)",
        "alerts.prune_deliveries",
        crontab={"minute": "23", "hour": "3"},
        description="Deletes finished webhook deliveries past ALERTS_DELIVERY_RETENTION_DAYS.",
    ),
)
