"""Logging filter that stamps every record with the current request id and Celery task id."""

from __future__ import annotations

import logging

from apiplatform.context import request_id_var


def _current_task_id() -> str | None:
    try:
        from celery._state import get_current_task
    except ImportError:  # pragma: no cover - celery is a hard dependency
        return None
    task = get_current_task()
    if task is None or task.request is None:
        return None
    return getattr(task.request, "id", None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        if not hasattr(record, "task_id"):
            record.task_id = _current_task_id() or "-"
        return True
