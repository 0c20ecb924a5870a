"""The one call the ingestion write cycle makes into alerts (ingestion/pipeline.py ``_write_cycle``)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction

logger = logging.getLogger(__name__)


def candles_written(*, now: datetime) -> None:
    """New prices and candles are being written in the current transaction: once it commits, queue
    the evaluation of every active alert (``alerts.evaluate``, ingestion queue). Never fails the write."""

    def queue() -> None:
        from marketdata.alerts.tasks import evaluate

        try:
            evaluate.apply_async(kwargs={"at": now.isoformat()})
        except Exception:
            logger.warning("alerts evaluation not queued (broker unreachable)", exc_info=True)

    from marketdata.alerts.models import Alert

    if Alert.objects.filter(active=True).exists():  # nobody's alert to evaluate: no task at all
        transaction.on_commit(queue)
