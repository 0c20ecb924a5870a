"""The task base in-process: retry taxonomy, backoff bounds, dead letters, replay bookkeeping.

Tasks are run with ``task.apply()`` (one eager execution with real retries, no global switch);
delivery through a broker and a real worker is in tests/ingestion_tasks/test_worker.py."""

from __future__ import annotations

import random
from unittest import mock

import httpx
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.cache import cache
from django.db import IntegrityError, OperationalError
from django.test import override_settings

from apiplatform.jobs import services
from apiplatform.jobs.base import (
    PermanentError,
    RetryableError,
    countdown_ceiling,
    is_retryable,
    project_task,
    retry_countdown,
)
from apiplatform.jobs.models import DeadLetter, JobRun
from tests.ingestion_tasks import worker_tasks
from tests.ingestion_tasks.worker_tasks import attempts_key, heal_key


def _http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    return httpx.HTTPStatusError("boom", request=request, response=httpx.Response(status, request=request))


class _ClientError(Exception):
    """Stands in for an API client error that classifies itself."""

    def __init__(self, retryable: bool):
        super().__init__("client error")
        self.retryable = retryable


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ConnectionError("reset"), True),
        (TimeoutError(), True),
        (httpx.ConnectTimeout("slow"), True),
        (OperationalError("server closed the connection"), True),
        (RetryableError("later"), True),
        (_http_error(429), True),
        (_http_error(503), True),
        (_ClientError(retryable=True), True),
        (_http_error(404), False),
        (_http_error(401), False),
        (_ClientError(retryable=False), False),
        (PermanentError("no"), False),
        (ValueError("bad"), False),
        (KeyError("k"), False),
        (IntegrityError("dup"), False),
        (SoftTimeLimitExceeded(), False),
    ],
)
def test_retry_taxonomy(exc, expected):
    assert is_retryable(exc) is expected


def test_per_task_lists_override_the_default_taxonomy():
    assert is_retryable(ValueError("x"), retry_on=(ValueError,)) is True
    assert is_retryable(ConnectionError("x"), fail_on=(ConnectionError,)) is False
    # fail_on wins over retry_on and over the exception's own flag
    assert is_retryable(RetryableError("x"), retry_on=(Exception,), fail_on=(RetryableError,)) is False


def test_countdown_grows_exponentially_with_jitter_and_stays_below_the_visibility_cap():
    rng = random.Random(7)
    for retries in range(6):
        exponential = 2.0 * 2**retries
        samples = [retry_countdown(retries, base=2.0, backoff_max=10_000, rng=rng) for _ in range(200)]
        assert min(samples) >= exponential / 2
        assert max(samples) <= exponential
        assert len({round(s, 6) for s in samples}) > 100  # jittered, not lock-step
    with override_settings(CELERY_MAX_COUNTDOWN=30):
        assert countdown_ceiling(10_000) == 29
        huge = [retry_countdown(40, base=2.0, backoff_max=10_000, rng=rng) for _ in range(50)]
        assert max(huge) <= 29
        # an upstream Retry-After is honoured, but never beyond the cap
        assert retry_countdown(0, base=1.0, backoff_max=100, retry_after=20) == 20
        assert retry_countdown(0, base=1.0, backoff_max=100, retry_after=3600) == 29


def test_decorator_sets_delivery_options():
    task = worker_tasks.flaky
    assert task.name == "tests.flaky"
    assert task.acks_late is True
    assert task.ignore_result is True
    assert task.queue == "ingestion"
    assert task.soft_time_limit < task.time_limit
    with pytest.raises(ValueError, match="time_limit"):
        project_task(name="tests.bad_limits", soft_time_limit=60, time_limit=30)


@pytest.mark.django_db
def test_transient_failures_retry_then_succeed_without_a_dead_letter():
    result = worker_tasks.flaky.apply(args=["k1", 2])
    assert result.successful(), result.traceback
    assert cache.get(attempts_key("k1")) == 3
    assert result.result == 3
    assert not DeadLetter.objects.exists()
    run = JobRun.objects.get(job="tests.flaky:k1")
    assert run.outcome == JobRun.Outcome.SUCCESS
    assert run.task_id == result.id


@pytest.mark.django_db
def test_exhausted_retries_write_a_dead_letter_with_attempts_args_and_traceback():
    result = worker_tasks.transient_until_healed.apply(args=["k2"], kwargs={"rows": 5})
    assert result.failed()
    max_retries = worker_tasks.transient_until_healed.max_retries
    assert cache.get(attempts_key("k2")) == max_retries + 1
    letter = DeadLetter.objects.get()
    assert letter.task_name == "tests.transient_until_healed"
    assert letter.args == ["k2"]
    assert letter.kwargs == {"rows": 5}
    assert letter.attempts == max_retries + 1
    assert letter.retryable is True
    assert letter.status == DeadLetter.Status.PENDING
    assert "RetryableError" in letter.error
    assert "upstream unavailable for k2" in letter.traceback
    assert letter.exception_type == "apiplatform.jobs.base.RetryableError"
    assert letter.first_failed_at <= letter.last_failed_at


@pytest.mark.django_db
@pytest.mark.parametrize("reason", ["value", "permanent"])
def test_permanent_error_is_dead_lettered_at_once(reason):
    result = worker_tasks.permanent.apply(args=["k3"], kwargs={"reason": reason})
    assert result.failed()
    assert cache.get(attempts_key("k3")) == 1
    letter = DeadLetter.objects.get()
    assert letter.attempts == 1
    assert letter.retryable is False


@pytest.mark.django_db
def test_same_task_failing_again_adds_to_the_pending_dead_letter():
    worker_tasks.permanent.apply(args=["k4"])
    first = DeadLetter.objects.get()
    worker_tasks.permanent.apply(args=["k4"])
    worker_tasks.permanent.apply(args=["other"])
    assert DeadLetter.objects.count() == 2
    again = DeadLetter.objects.get(pk=first.pk)
    assert again.attempts == 2
    assert again.last_failed_at > first.last_failed_at
    assert again.first_failed_at == first.first_failed_at


@pytest.mark.django_db
def test_calling_the_function_directly_neither_retries_nor_dead_letters():
    with pytest.raises(RetryableError):
        worker_tasks.transient_until_healed("k5")
    assert cache.get(attempts_key("k5")) == 1
    assert not DeadLetter.objects.exists()


@pytest.mark.django_db
def test_replay_is_enqueued_only_after_commit_and_marks_the_letter(
    django_capture_on_commit_callbacks, monkeypatch
):
    worker_tasks.permanent.apply(args=["k6"])
    letter = DeadLetter.objects.get()
    sent = mock.Mock()
    monkeypatch.setattr(worker_tasks.permanent, "apply_async", sent)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.dead_letter_replay(dead_letter_id=letter.pk)
    assert sent.call_count == 0  # nothing leaves before the commit
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replay_count == 1
    assert letter.replayed_at is not None
    assert len(callbacks) == 1
    callbacks[0]()
    sent.assert_called_once()
    call = sent.call_args.kwargs
    assert call["args"] == ["k6"]
    assert call["task_id"] == letter.replay_task_id
    assert call["headers"] == {"dead_letter_id": letter.pk}
    # a replayed letter is not replayed twice by accident
    with pytest.raises(services.DeadLetterNotReplayable):
        services.dead_letter_replay(dead_letter_id=letter.pk)


@pytest.mark.django_db
def test_failed_replay_returns_the_letter_to_pending_with_attempts_added(monkeypatch):
    worker_tasks.transient_until_healed.apply(args=["k7"])
    letter = DeadLetter.objects.get()
    first_attempts = letter.attempts
    monkeypatch.setattr("apiplatform.jobs.services.transaction.on_commit", mock.Mock())
    services.dead_letter_replay(dead_letter_id=letter.pk)
    letter.refresh_from_db()
    # the replayed message runs (eagerly here) with the dead-letter header and fails again
    worker_tasks.transient_until_healed.apply(
        args=["k7"], task_id=letter.replay_task_id, headers={"dead_letter_id": letter.pk}
    )
    letter.refresh_from_db()
    assert DeadLetter.objects.count() == 1
    assert letter.status == DeadLetter.Status.PENDING
    assert letter.attempts == 2 * first_attempts
    # healed: the next replay succeeds and says so
    cache.set(heal_key("k7"), True)
    services.dead_letter_replay(dead_letter_id=letter.pk)
    letter.refresh_from_db()
    result = worker_tasks.transient_until_healed.apply(
        args=["k7"], task_id=letter.replay_task_id, headers={"dead_letter_id": letter.pk}
    )
    assert result.successful()
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.REPLAYED
    assert letter.replay_succeeded_at is not None
    assert letter.replay_count == 2


@pytest.mark.django_db
def test_bulk_replay_skips_letters_that_are_not_pending(monkeypatch):
    monkeypatch.setattr("apiplatform.jobs.services.transaction.on_commit", mock.Mock())
    for key in ("a", "b", "c"):
        worker_tasks.permanent.apply(args=[key])
    a, b, c = DeadLetter.objects.order_by("pk")
    services.dead_letter_resolve(dead_letter_id=c.pk, note="superseded")
    replayed, skipped = services.dead_letters_replay(dead_letter_ids=[a.pk, b.pk, c.pk, 999_999])
    assert (replayed, skipped) == (2, 2)
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"replayed", "resolved"}
