"""The pipeline tasks as interfaces: they call the pipeline with a client, record the run (task id,
calls, rows, rejects, outcome) and classify upstream errors with the task taxonomy."""

from __future__ import annotations

import sys
import types

import pytest

import ingestion
from apiplatform.jobs.base import is_retryable
from apiplatform.jobs.models import DeadLetter, JobRun
from ingestion import tasks
from ingestion.coingecko import (
    BudgetTimeout,
    CoinGeckoAuthError,
    CoinGeckoNotFound,
    CoinGeckoPayloadError,
    CoinGeckoRateLimited,
    CoinGeckoServerError,
    CoinGeckoShapeError,
    CoinGeckoTransportError,
    NoUsableKeyError,
)


class FakeMetrics:
    def __init__(self):
        self.calls = 0

    def snapshot(self):
        return {"calls": self.calls, "retries": 0}


class FakeClient:
    def __init__(self):
        self.metrics = FakeMetrics()
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def fake_pipeline(monkeypatch):
    pipeline = types.SimpleNamespace(calls=[])
    monkeypatch.setitem(sys.modules, "ingestion.pipeline", pipeline)
    monkeypatch.setattr(ingestion, "pipeline", pipeline, raising=False)
    clients: list[FakeClient] = []

    def make():
        client = FakeClient()
        clients.append(client)
        return client

    monkeypatch.setattr(tasks.CoinGeckoClient, "from_settings", staticmethod(make))
    pipeline.clients = clients
    return pipeline


@pytest.mark.django_db
def test_refresh_task_records_the_run_with_task_id_and_upstream_calls(fake_pipeline):
    def refresh_markets(client, *, now):
        client.metrics.calls += 4  # the pipeline does not count calls: the client's counters do
        fake_pipeline.calls.append(now)
        return {"rows_written": 250, "rejects": 2, "coins": 250}

    fake_pipeline.refresh_markets = refresh_markets
    result = tasks.refresh_markets.apply()
    assert result.successful(), result.traceback
    run = JobRun.objects.get(job="ingestion.refresh_markets")
    assert run.task_id == result.id
    assert (run.calls, run.rows_written, run.rejects) == (4, 250, 2)
    assert run.outcome == "partial"  # rejects were reported
    assert run.details["coins"] == 250
    assert fake_pipeline.clients[0].closed


@pytest.mark.django_db
def test_upstream_outage_retries_then_dead_letters_and_records_failed_runs(fake_pipeline):
    def refresh_markets(client, *, now):
        raise CoinGeckoServerError(endpoint="/coins/markets", status=503)

    fake_pipeline.refresh_markets = refresh_markets
    result = tasks.refresh_markets.apply()
    assert result.failed()
    attempts = tasks.refresh_markets.max_retries + 1
    runs = JobRun.objects.filter(job="ingestion.refresh_markets")
    assert runs.count() == attempts
    assert set(runs.values_list("outcome", flat=True)) == {"failed"}
    letter = DeadLetter.objects.get()
    assert letter.task_name == "ingestion.refresh_markets"
    assert letter.attempts == attempts
    assert "HTTP 503" in letter.error
    assert all(c.closed for c in fake_pipeline.clients)


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (CoinGeckoRateLimited(endpoint="/x", status=429, retry_after=3), True),
        (CoinGeckoServerError(endpoint="/x", status=502), True),
        (CoinGeckoTransportError("reset"), True),
        (CoinGeckoPayloadError("truncated"), True),
        (CoinGeckoNotFound(endpoint="/x", status=404), False),
        (CoinGeckoAuthError(endpoint="/x", status=401), False),
        (CoinGeckoShapeError("field missing"), False),
        (NoUsableKeyError("all keys rejected"), False),
    ],
)
def test_coingecko_errors_follow_the_taxonomy(exc, retryable):
    assert is_retryable(exc) is retryable


def test_exhausted_rate_budget_is_retried_by_upstream_tasks():
    assert is_retryable(BudgetTimeout("waited too long")) is False  # the client's view
    for task in (tasks.refresh_markets, tasks.backfill, tasks.refetch_range, tasks.sync_universe):
        assert is_retryable(BudgetTimeout("waited"), retry_on=task.retry_on, fail_on=task.fail_on)


@pytest.mark.django_db
def test_quality_check_task_records_what_it_found():
    result = tasks.quality_check.apply()
    assert result.successful(), result.traceback
    run = JobRun.objects.get(job="ingestion.quality_check")
    assert run.outcome == "success" and run.task_id == result.id
    assert run.details["found"] == 0 and run.details["new"] == 0
