"""The one base for every Celery task of the project: `@project_task(...)`.

What it gives a task (Sentry's `instrumented_task` + `retry` idea, Saleor's recorded side effects):

- name, queue, soft/hard time limits, ``acks_late`` and ``ignore_result`` set in one place;
- a log line at start and end carrying the task id (the logging filter adds it to every line);
- the retry taxonomy (`is_retryable`): transient errors (network, timeouts, upstream 429/5xx,
  lost database connections, deadlocks) retry with exponential backoff and jitter, capped below
  ``settings.CELERY_MAX_COUNTDOWN`` so the Redis visibility timeout never redelivers a waiting task;
  everything else (bad input, bugs, integrity errors, time limits) fails at once;
- when retries run out, or at once for a permanent error, a `DeadLetter` row with the task name,
  arguments, error, traceback, attempts and the app that owns the task, which an operator can replay
  from the admin (*Jobs → Dead letters*, `apiplatform.jobs.services.dead_letter_replay`).

Tasks are always bound (the function's first parameter is the task, ``self.request.id`` is the task
id). Calling the function directly (``my_task(...)``) runs the body plainly: no retry, no dead letter.
"""

from __future__ import annotations

import logging
import random
import time
import traceback as traceback_module
from collections.abc import Callable
from typing import Any, TypedDict

import httpx
from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from django import db
from django.apps import apps
from django.conf import settings
from redis import exceptions as redis_exceptions

from apiplatform.celery import app
from apiplatform.jobs.services import DEAD_LETTER_HEADER, dead_letter_mark_succeeded, dead_letter_record

logger = logging.getLogger(__name__)

# Queues. A worker must consume all of them: `celery -A apiplatform worker -Q default,ingestion,backfill`.
QUEUE_DEFAULT = "default"
QUEUE_INGESTION = "ingestion"  # short, latency-sensitive jobs (the per-minute refresh, roll-ups, checks)
QUEUE_BACKFILL = "backfill"  # long history fetches and quality re-fetches: never in front of the refresh
QUEUES = (QUEUE_DEFAULT, QUEUE_INGESTION, QUEUE_BACKFILL)
# DEAD_LETTER_HEADER (the header on a replayed message) is imported above from the dead-letter services,
# which send it; the services never import this module.


class RetryableError(Exception):
    """Raise (or subclass) for a transient failure that should be retried with backoff.

    ``retry_after`` (seconds), when set, is the earliest useful retry (e.g. an upstream Retry-After).
    """

    retryable = True

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Raise (or subclass) for a failure that retrying cannot fix: dead-lettered at once."""

    retryable = False


#: Exception types that are transient by nature.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ConnectionError,  # builtin: refused/reset/aborted
    TimeoutError,
    httpx.TransportError,  # connect/read timeouts, protocol errors, network errors
    db.OperationalError,  # connection lost, server restart, deadlock, serialization failure
    db.InterfaceError,
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
)


def is_retryable(exc: BaseException, *, retry_on: tuple = (), fail_on: tuple = ()) -> bool:
    """The retry taxonomy. Order: per-task ``fail_on`` → per-task ``retry_on`` → the exception's own
    ``retryable`` attribute (the CoinGecko client's errors and `RetryableError`/`PermanentError`
    carry one) → HTTP status (429 and 5xx retry, other 4xx fail) → the transient types above.
    Anything else (ValueError, KeyError, IntegrityError, DataError, SoftTimeLimitExceeded, ...)
    is permanent: retrying the same input would fail the same way."""
    if fail_on and isinstance(exc, fail_on):
        return False
    if retry_on and isinstance(exc, retry_on):
        return True
    if isinstance(exc, SoftTimeLimitExceeded):
        return False
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status == 429 or status >= 500
    return isinstance(exc, RETRYABLE_EXCEPTIONS)


def task_app_label(task: Task) -> str:
    """Label of the Django app that owns ``task``: the installed app containing the module that
    declares it, else the first part of its name (``tests.flaky`` → ``tests``)."""
    config = apps.get_containing_app_config(task.__module__ or "")
    if config is not None:
        return config.label
    return (task.name or "").split(".", 1)[0]


def countdown_ceiling(backoff_max: float) -> float:
    """The longest countdown a task may use: its own cap, and always below CELERY_MAX_COUNTDOWN."""
    return max(0.0, min(float(backoff_max), float(settings.CELERY_MAX_COUNTDOWN) - 1.0))


def retry_countdown(
    retries: int,
    *,
    base: float,
    backoff_max: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``retries + 1``: exponential (``base * 2**retries``) with
    "equal jitter" (at least half of it, the other half random, so a burst of failures does not
    retry in lock-step), at least the upstream's ``retry_after``, and never above the ceiling."""
    ceiling = countdown_ceiling(backoff_max)
    exponential = min(ceiling, base * (2 ** max(0, retries)))
    countdown = exponential / 2 + (rng or random).uniform(0, exponential / 2)
    if retry_after:
        countdown = max(countdown, float(retry_after))
    return min(countdown, ceiling)


class _DeadLetterArgs(TypedDict):
    """The keyword arguments of ``dead_letter_record``, gathered before the write is tried."""

    task_name: str
    app: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    exc: BaseException
    traceback: str
    attempts: int
    retryable: bool
    dead_letter_id: int | None


class ProjectTask(Task):
    """Base class set by `project_task`; see the module docstring."""

    #: Set on every task class by `project_task` (``app.task(queue=...)``); Celery's Task declares none.
    queue: str

    acks_late = True
    ignore_result = True
    max_retries = 5
    #: Exponential backoff: first retry after ~``backoff_base`` seconds, doubling, capped.
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    #: Per-task additions to the taxonomy.
    retry_on: tuple = ()
    fail_on: tuple = ()
    #: Write a DeadLetter when the task gives up.
    dead_letter: bool = True
    #: Called as ``gave_up(exc, args, kwargs)`` when the task gives up, before the dead letter (e.g. to
    #: mark the row it was working on as failed). Set through ``project_task(gave_up=...)``.
    gave_up: Callable[[BaseException, tuple, dict], None] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            return self.run(*args, **kwargs)
        attempt = (request.retries or 0) + 1
        started = time.monotonic()
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        logger.info(
            "task %s started (attempt %d%s)", self.name, attempt, ", redelivered" if redelivered else ""
        )
        try:
            result = self.run(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:
            self._on_exception(exc, args, kwargs, attempt)
            raise  # _on_exception raises Retry or returns after dead-lettering
        elapsed_ms = int((time.monotonic() - started) * 1000)
        logger.info("task %s succeeded in %d ms", self.name, elapsed_ms)
        dead_letter_id = self._dead_letter_id()
        if dead_letter_id is not None:
            dead_letter_mark_succeeded(dead_letter_id=dead_letter_id)
        return result

    # --- internals ---------------------------------------------------------------------------------
    def _dead_letter_id(self) -> int | None:
        headers = self.request.headers or {}
        value = headers.get(DEAD_LETTER_HEADER, getattr(self.request, DEAD_LETTER_HEADER, None))
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _on_exception(self, exc: Exception, args: tuple, kwargs: dict, attempt: int) -> None:
        retryable = is_retryable(exc, retry_on=self.retry_on, fail_on=self.fail_on)
        retries = self.request.retries or 0
        if retryable and self.max_retries is not None and retries < self.max_retries:
            countdown = retry_countdown(
                retries,
                base=self.backoff_base,
                backoff_max=self.backoff_max,
                retry_after=getattr(exc, "retry_after", None),
            )
            logger.warning(
                "task %s attempt %d failed with %s: %s; retry %d/%d in %.1f s",
                self.name,
                attempt,
                type(exc).__name__,
                exc,
                retries + 1,
                self.max_retries,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown)
        reason = "retries exhausted" if retryable else "permanent error"
        logger.error(
            "task %s failed for good after %d attempt(s) (%s): %s: %s",
            self.name,
            attempt,
            reason,
            type(exc).__name__,
            exc,
        )
        if self.gave_up is not None:
            try:
                self.gave_up(exc, args, kwargs)
            except Exception:
                logger.exception("the gave_up hook of task %s failed", self.name)
        if not self.dead_letter:
            return
        self._write_dead_letter(exc, args, kwargs, attempt, retryable)

    def _write_dead_letter(
        self, exc: Exception, args: tuple, kwargs: dict, attempt: int, retryable: bool
    ) -> None:
        delivery = self.request.delivery_info or {}
        record: _DeadLetterArgs = {
            "task_name": self.name,
            "app": task_app_label(self),
            "task_id": self.request.id or "",
            "args": list(args),
            "kwargs": dict(kwargs),
            "queue": delivery.get("routing_key") or self.queue or "",
            "exc": exc,
            "traceback": "".join(traceback_module.format_exception(exc)),
            "attempts": attempt,
            "retryable": retryable,
            "dead_letter_id": self._dead_letter_id(),
        }
        try:
            dead_letter_record(**record)
        except Exception:
            # The database is gone too: keep the message in the broker rather than lose it, and say
            # everything in the log in case it never comes back.
            logger.critical(
                "could not write dead letter for task %s args=%r kwargs=%r error=%r; retrying later",
                self.name,
                args,
                kwargs,
                exc,
                exc_info=True,
            )
            raise self.retry(
                exc=exc,
                countdown=countdown_ceiling(self.backoff_max),
                max_retries=(self.request.retries or 0) + 1,  # beyond the limit: keep it in the broker
            ) from exc


def project_task(
    *,
    name: str,
    queue: str = QUEUE_DEFAULT,
    soft_time_limit: int | None = None,
    time_limit: int | None = None,
    max_retries: int = 5,
    backoff_base: float = 2.0,
    backoff_max: float = 300.0,
    retry_on: tuple = (),
    fail_on: tuple = (),
    dead_letter: bool = True,
    gave_up: Callable[[BaseException, tuple, dict], None] | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], ProjectTask]:
    """Declare a project task. Example::

        @project_task(name="ingestion.refresh_markets", queue=QUEUE_INGESTION, soft_time_limit=50)
        def refresh_markets_task(self) -> None: ...

    Extra ``options`` go to Celery (``expires``, ``rate_limit``, ...). Time limits default to the
    project's CELERY_TASK_SOFT_TIME_LIMIT / CELERY_TASK_TIME_LIMIT; a hard limit is always above
    the soft one so the soft one can clean up.
    """
    soft = soft_time_limit if soft_time_limit is not None else settings.CELERY_TASK_SOFT_TIME_LIMIT
    hard = time_limit if time_limit is not None else max(settings.CELERY_TASK_TIME_LIMIT, soft + 10)
    if hard <= soft:
        raise ValueError(f"task {name}: time_limit ({hard}) must be above soft_time_limit ({soft})")
    if max_retries is None or max_retries < 0:
        raise ValueError(f"task {name}: max_retries must be a non-negative integer")

    def decorator(fn: Callable[..., Any]) -> ProjectTask:
        return app.task(
            bind=True,
            base=ProjectTask,
            name=name,
            queue=queue,
            soft_time_limit=soft,
            time_limit=hard,
            acks_late=True,
            ignore_result=True,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            retry_on=tuple(retry_on),
            fail_on=tuple(fail_on),
            dead_letter=dead_letter,
            gave_up=staticmethod(gave_up) if gave_up is not None else None,
            **options,
        )(fn)

    return decorator
