"""Writes of the ingestion app: quality flags (run records and dead letters: `apiplatform.jobs.services`)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apiplatform.jobs.services import jsonable
from ingestion.models import QualityFlag

logger = logging.getLogger(__name__)


# --- quality flags -------------------------------------------------------------------------------------
@transaction.atomic
def quality_flag_raise(
    *,
    coin_id: int,
    timeframe: str,
    kind: str,
    range_start: datetime,
    range_end: datetime,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[QualityFlag, bool]:
    """Record a finding: the open flag of (coin, timeframe, kind, range start) is updated (its range
    may have grown), or a new one is created. Returns (flag, created)."""
    now = now or timezone.now()
    flag = (
        QualityFlag.objects.select_for_update()
        .filter(coin_id=coin_id, timeframe=timeframe, kind=kind, range_start=range_start, resolved_at=None)
        .first()
    )
    if flag is None:
        flag = QualityFlag.objects.create(
            coin_id=coin_id,
            timeframe=timeframe,
            kind=kind,
            range_start=range_start,
            range_end=range_end,
            details=details or {},
            detected_at=now,
            last_seen_at=now,
        )
        logger.warning(
            "quality flag %s: %s %s %s [%s, %s)", flag.pk, kind, coin_id, timeframe, range_start, range_end
        )
        return flag, True
    flag.range_end = max(flag.range_end, range_end)
    flag.details = {**flag.details, **(details or {})}
    flag.last_seen_at = now
    flag.save(update_fields=["range_end", "details", "last_seen_at"])
    return flag, False


def quality_flag_resolve(
    *, flag_id: int, resolution: str = "resolved by operator", now: datetime | None = None
):
    return QualityFlag.objects.filter(pk=flag_id, resolved_at=None).update(
        resolved_at=now or timezone.now(), resolution=resolution[:200]
    )


@transaction.atomic
def quality_flag_schedule_refetch(*, flag_id: int, now: datetime | None = None) -> QualityFlag:
    """Enqueue `ingestion.refetch_range` for the flag (after commit); the task re-fetches exactly the
    flag's range through the pipeline's backfill."""
    flag = QualityFlag.objects.select_for_update().get(pk=flag_id)
    task_id = str(uuid.uuid4())
    flag.refetch_scheduled_at = now or timezone.now()
    flag.refetch_task_id = task_id
    flag.refetch_count += 1
    flag.refetch_finished_at = None
    flag.save(
        update_fields=["refetch_scheduled_at", "refetch_task_id", "refetch_count", "refetch_finished_at"]
    )

    def send() -> None:
        from ingestion.tasks import refetch_range

        refetch_range.apply_async(kwargs={"flag_id": flag.pk}, task_id=task_id)

    transaction.on_commit(send)
    return flag


def quality_flag_refetch_finished(*, flag_id: int, details: dict[str, Any] | None = None) -> None:
    flag = QualityFlag.objects.get(pk=flag_id)
    flag.refetch_finished_at = timezone.now()
    if details:
        flag.details = {**flag.details, "refetch": jsonable(details)}
    flag.save(update_fields=["refetch_finished_at", "details"])


@transaction.atomic
def quality_refetch_request(
    *,
    coin_id: int,
    timeframe: str,
    range_start: datetime,
    range_end: datetime,
    requested_by: str,
    now: datetime | None = None,
) -> QualityFlag:
    """An operator asks for a range of one series to be fetched again: the same path as a finding of
    the quality check. A ``missing`` flag over the range is raised (or the open one starting there is
    widened) with who asked, then `ingestion.refetch_range` is enqueued for it after commit (which
    re-fetches at the finest timeframe upstream has history for; see `ingestion.tasks.refetch_plan`).
    """
    now = now or timezone.now()
    flag, _ = quality_flag_raise(
        coin_id=coin_id,
        timeframe=timeframe,
        kind=QualityFlag.Kind.MISSING,
        range_start=range_start,
        range_end=range_end,
        details={"requested_by": requested_by[:200], "requested_at": now.isoformat()},
        now=now,
    )
    return quality_flag_schedule_refetch(flag_id=flag.pk, now=now)
