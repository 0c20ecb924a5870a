"""Celery tasks of the marketdata app: its own maintenance jobs, scheduled in `marketdata.schedules`.

Each records its run through `apiplatform.jobs.services.job_run_record` (*Jobs → Job runs* in the
admin) and is idempotent."""

from __future__ import annotations

from typing import Any

from apiplatform.jobs.base import QUEUE_DEFAULT, project_task
from apiplatform.jobs.services import job_run_record
from marketdata import partitions
from marketdata.screener import latest_indicators_refresh


@project_task(name="marketdata.maintain_partitions", queue=QUEUE_DEFAULT, soft_time_limit=600, time_limit=660)
def maintain_partitions(self) -> dict[str, Any]:
    """Create candle partitions ahead and drop the ones past their retention."""
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        run.details["created"] = partitions.partitions_maintain()
        run.details["pruned"] = partitions.partitions_prune()
    return run.details


@project_task(name="marketdata.refresh_screener", queue=QUEUE_DEFAULT, soft_time_limit=240, time_limit=300)
def refresh_screener(self, timeframes: list[str]) -> dict[str, Any]:
    """Refresh the screener's latest-indicator table for each timeframe (after the roll-ups);
    ``details``: per timeframe the coins written, those recomputed in full, and the seconds."""
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        for timeframe in timeframes:
            result = latest_indicators_refresh(timeframe=timeframe)
            run.rows_written += result.coins
            run.details[timeframe] = {
                "coins": result.coins,
                "full": result.full,
                "seconds": round(result.seconds, 3),
            }
    return run.details


# DEPRECATED, remove in the release after the one that renamed them (issue 11): the tasks' old
# names in ingestion, kept so messages already queued under them still run; they forward to the
# new tasks. Beat rows were renamed by migration jobs/0003.
@project_task(name="ingestion.maintain_partitions", queue=QUEUE_DEFAULT, max_retries=0)
def maintain_partitions_old_name(self) -> None:
    maintain_partitions.apply_async()


@project_task(name="ingestion.refresh_screener", queue=QUEUE_DEFAULT, max_retries=0)
def refresh_screener_old_name(self, timeframes: list[str]) -> None:
    refresh_screener.apply_async(kwargs={"timeframes": timeframes})
