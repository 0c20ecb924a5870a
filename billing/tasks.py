"""Celery tasks of the billing app.

* ``billing.flush_usage`` moves metered usage from Redis into PostgreSQL (billing.metering). Celery
  beat runs it every ``BILLING_USAGE_FLUSH_SECONDS`` (default 60 s; declared in ``billing.schedules``).
  Overlapping, repeated or killed runs are safe: each batch is applied exactly once, and a failed run
  leaves its batch pending for the next one (hence no retries and no dead letter here).
* ``billing.apply_stripe_event`` applies one received Stripe webhook event, exactly once
  (``billing.webhooks``); Stripe unreachable → retries, then a dead letter and the event ``failed``.
* ``billing.requeue_stripe_events`` queues again the events whose first queueing was lost.
* ``billing.report_overage`` sends overage credits to Stripe's meter (``billing.overage``), every
  ``BILLING_REPORT_EVERY_SECONDS``; each cycle is complete in itself, so no retries.
* ``billing.enforce_past_due_grace`` moves organizations whose ``past_due`` grace ended to the
  default plan (``billing.subscriptions``).
"""

from __future__ import annotations

from apiplatform.jobs.base import project_task
from billing import metering, overage, stripe_api, subscriptions, webhooks


@project_task(
    name="billing.flush_usage", soft_time_limit=240, time_limit=300, max_retries=0, dead_letter=False
)
def flush_usage(self) -> dict:
    result = metering.usage_flush()
    return {"applied": result.applied, "skipped": result.skipped, "requests": result.requests}


def _stripe_event_gave_up(exc: BaseException, args: tuple, kwargs: dict) -> None:
    event_id = kwargs.get("event_id") or (args[0] if args else "")
    webhooks.event_failed(event_id=str(event_id), error=f"{type(exc).__name__}: {exc}")


@project_task(
    name="billing.apply_stripe_event",
    soft_time_limit=60,
    time_limit=90,
    max_retries=8,
    backoff_base=5.0,
    backoff_max=600.0,
    gave_up=_stripe_event_gave_up,
)
def apply_stripe_event(self, event_id: str) -> str:
    return webhooks.event_apply(event_id=event_id)


@project_task(name="billing.requeue_stripe_events", soft_time_limit=60, time_limit=90, max_retries=0)
def requeue_stripe_events(self) -> int:
    return webhooks.events_requeue_stale()


@project_task(name="billing.report_overage", soft_time_limit=540, time_limit=600, max_retries=0)
def report_overage(self) -> dict:
    if not stripe_api.configured():
        return {"skipped": "billing not configured"}
    result = overage.report_cycle()
    return {
        "sent": result.sent,
        "credits": result.credits,
        "canceled": result.canceled,
        "drift": result.drift,
    }


@project_task(name="billing.enforce_past_due_grace", soft_time_limit=120, time_limit=180, max_retries=2)
def enforce_past_due_grace(self) -> int:
    return subscriptions.past_due_enforce()
