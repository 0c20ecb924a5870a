"""Celery tasks of the alerts app (the house's ``project_task`` base; schedules in ``schedules.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from apiplatform.jobs.base import QUEUE_DEFAULT, QUEUE_INGESTION, PermanentError, project_task
from apiplatform.jobs.services import DEAD_LETTER_HEADER, dead_letter_record, job_run_record
from marketdata.alerts import services
from marketdata.alerts.evaluation import alerts_evaluate


class DeliveryGaveUp(PermanentError):
    """The last attempt of a delivery failed: the task base writes the dead letter."""


@project_task(name="alerts.evaluate", queue=QUEUE_INGESTION, soft_time_limit=50, time_limit=60, max_retries=2)
def evaluate(self, at: str | None = None) -> dict[str, Any]:
    """Evaluate every active alert (queued by the ingestion write cycle when it commits)."""
    result = alerts_evaluate(now=datetime.fromisoformat(at) if at else None)
    return {"alerts": result.alerts, "fired": result.fired, "seconds": round(result.seconds, 3)}


@project_task(
    name=services.DELIVER_TASK, queue=QUEUE_DEFAULT, soft_time_limit=30, time_limit=40, max_retries=0
)
def deliver(self, delivery_id: int, attempt: int | None = None, manual: bool = False) -> str:
    """One attempt of a delivery. Retries are not Celery retries: the next attempt is scheduled in
    the database (24 h of backoff exceed any broker countdown) and sent by ``alerts.dispatch_due``.
    A dead letter being replayed (its header is set) makes one more attempt, like a customer replay."""
    replay = manual or (self.request.headers or {}).get(DEAD_LETTER_HEADER) is not None
    outcome = services.delivery_attempt(delivery_id=delivery_id, attempt=attempt, manual=replay)
    if outcome.gave_up and outcome.delivery is not None:
        raise DeliveryGaveUp(
            f"delivery {delivery_id} to {outcome.delivery.endpoint.url} failed {outcome.delivery.attempts} "
            "times: dead"
        )
    return outcome.delivery.status if outcome.delivery is not None else "gone"


@project_task(
    name="alerts.deliver_batch", queue=QUEUE_DEFAULT, soft_time_limit=60, time_limit=75, max_retries=3
)
def deliver_batch(self, deliveries: list[list[int]]) -> int:
    """Attempts queued together (``[[delivery id, attempt number], ...]``: a storm of firings, the
    dispatcher's due retries). More than one chunk: split by endpoint into chunks and queue one
    message per chunk. One chunk: make its attempts in turn; what the time budget leaves is queued as
    a new chunk. A last attempt that fails writes the same dead letter as ``alerts.deliver`` (replayable
    by the operator, resolved by a customer replay). Attempt numbers make a redelivered message a no-op."""
    pairs = [(int(pk), int(number)) for pk, number in deliveries]
    if len(pairs) > services.DELIVER_CHUNK:
        chunks = services.deliveries_chunk(pairs=pairs)
        for chunk in chunks:
            deliver_batch.apply_async(kwargs={"deliveries": [list(p) for p in chunk]})
        return len(chunks)
    outcomes, rest = services.deliveries_attempt_chunk(pairs=pairs)
    if rest:
        deliver_batch.apply_async(kwargs={"deliveries": [list(p) for p in rest]})
    for outcome in outcomes:
        if outcome.gave_up and outcome.delivery is not None:
            _dead_letter(self, outcome.delivery)
    return len(outcomes)


def _dead_letter(task: Any, delivery: Any) -> None:
    """The dead letter ``alerts.deliver`` writes when a last attempt fails (same task, same kwargs)."""
    exc = DeliveryGaveUp(
        f"delivery {delivery.pk} to {delivery.endpoint.url} failed {delivery.attempts} times: dead"
    )
    dead_letter_record(
        task_name=services.DELIVER_TASK,
        app="alerts",
        task_id=task.request.id or "",
        args=[],
        kwargs={"delivery_id": delivery.pk, "attempt": delivery.attempts},
        queue=QUEUE_DEFAULT,
        exc=exc,
        traceback="",
        attempts=delivery.attempts,
        retryable=False,
    )


@project_task(
    name="alerts.dispatch_due", queue=QUEUE_DEFAULT, soft_time_limit=50, time_limit=60, max_retries=0
)
def dispatch_due(self) -> int:
    """Queue the deliveries whose next attempt is due."""
    return services.deliveries_dispatch_due()


@project_task(name="alerts.prune_deliveries", queue=QUEUE_DEFAULT, soft_time_limit=240, time_limit=300)
def prune_deliveries(self) -> dict[str, Any]:
    """Delete finished deliveries (and their attempts) past ALERTS_DELIVERY_RETENTION_DAYS."""
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        keep = timedelta(days=settings.ALERTS_DELIVERY_RETENTION_DAYS)
        run.details["pruned"] = services.deliveries_prune(older_than=keep)
    return run.details
