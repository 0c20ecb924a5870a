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
    Schedule(
        "billing: overage to Stripe",
        "billing.report_overage",
        every_seconds=settings.BILLING_REPORT_EVERY_SECONDS,
        description="Reports overage credits per organization and hour to the Stripe meter (exactly once).",
    ),
    Schedule(
        "billing: Stripe events not yet applied",
        "billing.requeue_stripe_events",
        every_seconds=300,
        description="Queues again the received Stripe events whose first queueing was lost.",
    ),
    Schedule(
        "billing: past_due grace",
        "billing.enforce_past_due_grace",
        every_seconds=300,
        description="Moves organizations whose past_due grace period ended to the default plan.",
    ),
)
