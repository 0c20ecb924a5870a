"""Celery tasks of the ingestion pipeline: thin interfaces over `ingestion.pipeline`,
`ingestion.quality`, `marketdata` and `ingestion.services`.

Every task is declared with `apiplatform.jobs.base.project_task` (acks_late, retry taxonomy, dead
letters), receives ids and plain values (never model instances), re-reads state when it runs, is
idempotent (a redelivered or replayed task writes the same rows again, which changes nothing), and
records its run (`apiplatform.jobs.services.job_run_record`: *Jobs → Job runs*). Schedules:
`ingestion.schedules` (`manage.py setup_schedules`). Marketdata's own jobs (screener, partitions)
are in `marketdata.tasks`; the housekeeping of run records is `jobs.housekeeping`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import types
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from apiplatform.jobs.base import (
    QUEUE_BACKFILL,
    QUEUE_INGESTION,
    RetryableError,
    project_task,
)
from apiplatform.jobs.services import RunStats, job_run_record
from ingestion.coingecko import BudgetTimeout, CoinGeckoClient
from ingestion.services import quality_flag_refetch_finished
from marketdata.models import TIMEFRAME_DELTA
from marketdata.services import bucket_floor

logger = logging.getLogger(__name__)

#: Upstream errors that are permanent for the client's own retry loop but transient for a task: the
#: shared rate budget was exhausted for a while; a later attempt gets its share.
UPSTREAM_RETRY_ON = (BudgetTimeout,)


# --- adapters to the pipeline (kept in one place) ----------------------------------------------------
@contextlib.contextmanager
def upstream_client() -> Iterator[Any]:
    """The CoinGecko client configured from settings (the real API or the simulator), closed after."""
    client = CoinGeckoClient.from_settings()
    try:
        yield client
    finally:
        client.close()


def _call_pipeline(run: RunStats, fn: Callable[..., Any], **kwargs: Any) -> None:
    """Call ``fn(client, **kwargs)`` and record its result in ``run``; the upstream calls come from
    the result when it counts them, otherwise from the client's own counters."""
    with upstream_client() as client:
        try:
            run.add(fn(client, **kwargs))
        finally:
            metrics = getattr(client, "metrics", None)
            counters = metrics.snapshot() if metrics is not None else {}
            if counters:
                run.details["upstream"] = {k: v for k, v in counters.items() if v}
                if not run.calls:
                    run.calls = int(counters.get("calls", 0))


def _raise_if_upstream_failed(run: RunStats) -> None:
    """The pipeline's backfill survives upstream failures per coin (after the client's own retries)
    and lists them under ``failed``; for a task that is a transient failure: retry with backoff,
    then dead-letter, so a replay can complete the data (the backfill is resumable/idempotent)."""
    failed = run.details.get("failed")
    if failed:
        raise RetryableError(f"upstream failed for {len(failed)} coin(s): {', '.join(map(str, failed[:10]))}")


# --- the per-minute refresh -------------------------------------------------------------------------
@project_task(
    name="ingestion.refresh_markets",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_INGESTION,
    soft_time_limit=50,
    time_limit=58,
    max_retries=2,
    backoff_base=3.0,
    backoff_max=15.0,
    expires=55,  # a refresh that waited a whole minute is superseded by the next one
)
def refresh_markets(self) -> dict[str, Any]:
    """One refresh cycle: markets for the whole universe → snapshots, ticks, current 1m candles,
    roll-ups. A minute whose refresh fails for good stays a gap for the quality check."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.refresh_markets, now=timezone.now())
        run.partial = bool(run.details.get("failed_pages"))
    return run.details


@project_task(
    name="ingestion.refresh_prices_fast",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_INGESTION,
    soft_time_limit=15,
    time_limit=18,
    max_retries=0,
    expires=18,  # the next run (every 20 s) supersedes one that waited this long
)
def refresh_prices_fast(self) -> dict[str, Any]:
    """The top ``INGESTION_FAST_COINS`` coins through /simple/price (every 20 s): ticks, snapshot
    prices, 1m candles, roll-ups through the same write path as the minute refresh."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.refresh_prices_fast, now=timezone.now())
    return run.details


@project_task(
    name="ingestion.refresh_exchange_rates",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_INGESTION,
    soft_time_limit=50,
    time_limit=58,
    max_retries=2,
)
def refresh_exchange_rates(self) -> dict[str, Any]:
    """The quote currencies' rates (/exchange_rates) for ``vs=`` conversions."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.refresh_exchange_rates, now=timezone.now())
    return run.details


@project_task(
    name="ingestion.refresh_global",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_INGESTION,
    soft_time_limit=50,
    time_limit=58,
    max_retries=2,
    expires=55,
)
def refresh_global(self) -> dict[str, Any]:
    """One global market snapshot (/global): the latest and the history of ``GET /v1/global``."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.refresh_global, now=timezone.now())
    return run.details


@project_task(name="ingestion.rollup_candles", queue=QUEUE_INGESTION, soft_time_limit=240, time_limit=300)
def rollup_candles(self, minutes: int = 30) -> dict[str, Any]:
    """Safety net for roll-ups: recompute the higher timeframes of the last ``minutes`` of 1m
    candles (unchanged buckets are not rewritten, so this is cheap when everything is in order)."""
    from marketdata.services import candles_rollup

    now = timezone.now()
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        results = candles_rollup(since=now - timedelta(minutes=minutes), until=now, now=now)
        for tf, res in results.items():
            run.rows_written += res.written
            run.details[tf] = res.as_dict()
    return run.details


@project_task(
    name="ingestion.sync_universe",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_INGESTION,
    soft_time_limit=600,
    time_limit=660,
)
def sync_universe(self) -> dict[str, Any]:
    """Daily: new coins added, delisted ones marked inactive (never deleted)."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.sync_universe)
    return run.details


@project_task(
    name="ingestion.backfill",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_BACKFILL,
    soft_time_limit=3000,
    time_limit=3300,
)
def backfill(self, coins: list[str], timeframe: str, days: int) -> dict[str, Any]:
    """History for some coins (upstream ids), resumable: the pipeline keeps per-series watermarks."""
    from ingestion import pipeline

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        _call_pipeline(run, pipeline.backfill, coins=coins, timeframe=timeframe, days=days, progress=False)
        _raise_if_upstream_failed(run)
    return run.details


# --- history -----------------------------------------------------------------------------------------
#: How often a running history fill logs its progress (seconds).
HISTORY_LOG_EVERY = 15.0
#: How often a history fill that wrote candles has the screener of the history timeframes recomputed
#: (seconds), so the 1h/4h/1d/1w screener shows the new history before its 5-minute schedule comes round.
HISTORY_SCREENER_EVERY = 60.0


@project_task(
    name="ingestion.fill_history",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_BACKFILL,
    soft_time_limit=3000,
    time_limit=3300,
    max_retries=1,
)
def fill_history(self, top: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    """Daily and hourly history for every active coin (the top ``top`` only, if given), newest first,
    within the budget the live refresh leaves, for ``seconds`` (``INGESTION_HISTORY_RUN_SECONDS``
    by default); resumable: the next run goes on from the watermarks (``ingestion.history``). A run
    that finds another one working returns at once."""
    from ingestion import history

    task_id = self.request.id or ""
    run_seconds = float(seconds if seconds is not None else settings.INGESTION_HISTORY_RUN_SECONDS)
    with history.exclusive(run_seconds + 300) as held:
        if not held:
            logger.info("fill_history: another history run is working: nothing to do")
            return {"skipped": "another run holds the history lock"}
        with job_run_record(job=self.name, task_id=task_id) as run:
            started = last_log = last_screener = time.monotonic()
            screened = 0  # candles written when the screener was last refreshed

            def screener_refresh(progress: Any) -> None:
                nonlocal last_screener, screened
                from marketdata.tasks import refresh_screener

                last_screener, screened = time.monotonic(), progress.candles
                refresh_screener.apply_async(kwargs={"timeframes": list(history.SCREENER_TIMEFRAMES)})

            def log_progress(progress: Any, left: int) -> None:
                nonlocal last_log
                if progress.candles > screened and time.monotonic() - last_screener >= HISTORY_SCREENER_EVERY:
                    screener_refresh(progress)
                if time.monotonic() - last_log >= HISTORY_LOG_EVERY:
                    last_log = time.monotonic()
                    logger.info(
                        "fill_history %s: %d ranges, %d calls, %d candles, %d series completed, "
                        "%d series to go in this run's plan (%.0f s)",
                        task_id, progress.ranges, progress.calls, progress.candles, progress.completed,
                        left, last_log - started,
                    )  # fmt: skip

            with history.history_client() as client:
                summary = history.fill(client, top=top, seconds=run_seconds, on_progress=log_progress)
            run.add(summary)
            if summary.details.get("candles", 0) > screened:
                screener_refresh(types.SimpleNamespace(candles=summary.details["candles"]))
            run.partial = bool(run.details.get("failed"))
            logger.info("fill_history %s: %s", task_id, run.details)
    return run.details


# --- data quality ------------------------------------------------------------------------------------
@project_task(name="ingestion.quality_check", queue=QUEUE_INGESTION, soft_time_limit=240, time_limit=300)
def quality_check(self) -> dict[str, Any]:
    from ingestion import quality

    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        result = quality.run_checks(now=timezone.now())
        run.details.update(result.as_dict())
    return run.details


@project_task(
    name="ingestion.refetch_range",
    retry_on=UPSTREAM_RETRY_ON,
    queue=QUEUE_BACKFILL,
    soft_time_limit=600,
    time_limit=660,
)
def refetch_range(self, flag_id: int) -> dict[str, Any]:
    """Re-fetch exactly the range of one quality flag through the pipeline's backfill.

    Upstream history exists only at some timeframes (``pipeline.BACKFILL_INTERVALS``: 1h, 1d); a
    flag on a finer series (1m gaps, 1m spikes) re-fetches the smallest covering range of the
    finest timeframe that exists, which repairs every higher timeframe; the fine buckets themselves
    cannot come back from upstream, so such a flag stays open for an operator (see docs)."""
    from ingestion import pipeline
    from ingestion.models import QualityFlag

    flag = QualityFlag.objects.select_related("coin").filter(pk=flag_id).first()
    if flag is None or flag.resolved_at is not None:
        logger.info("quality flag %s is gone or resolved: nothing to re-fetch", flag_id)
        return {"skipped": True}
    timeframe, start, end = refetch_plan(flag.timeframe, flag.range_start, flag.range_end)
    with job_run_record(job=self.name, task_id=self.request.id or "") as run:
        run.details.update(
            flag_id=flag.pk,
            coin=flag.coin.upstream_id,
            timeframe=timeframe,
            start=start.isoformat(),
            end=end.isoformat(),
        )
        if timeframe != flag.timeframe:
            run.details["flag_timeframe"] = flag.timeframe
        _call_pipeline(
            run,
            pipeline.backfill,
            coins=[flag.coin.upstream_id],
            timeframe=timeframe,
            start=start,
            end=end,
        )
        _raise_if_upstream_failed(run)
    quality_flag_refetch_finished(flag_id=flag.pk, details=run.details)
    return run.details


def refetch_plan(timeframe: str, start: datetime, end: datetime) -> tuple[str, datetime, datetime]:
    """(timeframe, start, end) to re-fetch for a flagged range: the flag's own when upstream has
    history at that timeframe, else the finest one that has, widened to whole buckets of it."""
    from ingestion import pipeline

    available = getattr(pipeline, "BACKFILL_INTERVALS", None)
    if not available or timeframe in available:
        return timeframe, start, end
    order = list(TIMEFRAME_DELTA)
    coarser = [tf for tf in order[order.index(timeframe) + 1 :] if tf in available]
    if not coarser:
        return timeframe, start, end
    tf = coarser[0]
    step = TIMEFRAME_DELTA[tf]
    return tf, bucket_floor(tf, start), bucket_floor(tf, end - timedelta(microseconds=1)) + step
