"""Run records of the pipeline's jobs (ingestion.services.ingestion_run_record)."""

from __future__ import annotations

import pytest

from ingestion import services
from ingestion.models import IngestionRun


@pytest.mark.django_db
def test_run_record_marks_failures_and_partial_runs():
    with pytest.raises(RuntimeError), services.ingestion_run_record(job="j", task_id="t1") as run:
        run.calls = 3
        raise RuntimeError("upstream exploded")
    failed = IngestionRun.objects.get(task_id="t1")
    assert failed.outcome == IngestionRun.Outcome.FAILED
    assert failed.calls == 3
    assert "upstream exploded" in failed.error
    assert failed.finished_at is not None

    with services.ingestion_run_record(job="j", task_id="t2") as run:
        run.add({"calls": 2, "rows_written": 10, "rejects": 1, "coins": 5})
        run.add({"calls": 1, "rows_written": 5})
    partial = IngestionRun.objects.get(task_id="t2")
    assert (partial.calls, partial.rows_written, partial.rejects) == (3, 15, 1)
    assert partial.outcome == IngestionRun.Outcome.PARTIAL
    assert partial.details == {"coins": 5}
