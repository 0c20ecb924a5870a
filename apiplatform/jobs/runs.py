"""The run record of a job, for tasks of apps that do not store runs themselves.

A job's run (start, finish, outcome, rows written, details) is stored by the recorder named in
``settings.JOBS_RUN_RECORDER``: a dotted path to a context manager ``recorder(*, job, task_id)``
that yields an object with at least ``rows_written`` (int) and ``details`` (dict) to fill. Today
that is ``ingestion.services.ingestion_run_record`` (*Ingestion → Ingestion runs*), so marketdata's
jobs show up beside the pipeline's without marketdata importing ingestion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string


class RunStats(Protocol):
    rows_written: int
    details: dict[str, Any]


@cache
def _recorder(path: str) -> Any:
    return import_string(path)


@contextlib.contextmanager
def job_run_record(*, job: str, task_id: str = "") -> Iterator[RunStats]:
    """Record one run of ``job`` through ``JOBS_RUN_RECORDER``; yields the stats to fill."""
    with _recorder(settings.JOBS_RUN_RECORDER)(job=job, task_id=task_id) as run:
        yield run
