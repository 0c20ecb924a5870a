"""Marketdata's own jobs (moved from ingestion): they record their runs like the pipeline's."""

from __future__ import annotations

import pytest

from apiplatform.jobs.models import JobRun
from marketdata import tasks


@pytest.mark.django_db
def test_partition_maintenance_task_records_its_run():
    result = tasks.maintain_partitions.apply()
    assert result.successful(), result.traceback
    run = JobRun.objects.get(job="marketdata.maintain_partitions")
    assert run.outcome == "success" and run.task_id == result.id
    assert "created" in run.details and "pruned" in run.details
