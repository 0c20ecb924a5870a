"""Schemathesis, with ALL its checks, over every public and management operation of the served schema.

The OpenAPI document is the one the app serves at /v1/schema/. Every operation gets positive and
negative cases (hypothesis, derandomized: the same cases on every run, so CI is deterministic), sent
in-process to the Django WSGI app against the real PostgreSQL and Redis, authenticated as a customer
would be (an API key on the public API, an owner's access token on the management API). Every
registered check runs on every answer, positive and negative data acceptance included. Failures are
collected, not stopped at: the message lists, per operation and check, how often it failed and the
smallest example (a curl command and the answer)."""

from __future__ import annotations

import contextlib

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks
from schemathesis.core.failures import FailureGroup

from tests.contract.conftest import MANAGEMENT, PUBLIC, Platform, api_group, served_schema

st_checks.load_all_checks()
ALL_CHECKS = st_checks.CHECKS.get_all()
MAX_EXAMPLES = 12  # per operation and generation mode: 35 operations x 2 modes in about a minute
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@contextlib.contextmanager
def keep_db_connection():
    """Like Django's test client: a WSGI request must not close the test transaction's connection.
    (Django's test client reconnects these handlers after each of its requests: enter this after.)"""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fast_accounts(settings, monkeypatch):
    """Sign-ups hash passwords (PBKDF2 at full strength costs ~0.3 s each) and queue verification
    emails: a cheap hasher, and the tasks run in the test's process (no message left in the broker)."""
    from apiplatform.celery import app

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setitem(app.conf, "task_always_eager", True)


def run_schemathesis(group: str, headers: dict[str, str]) -> tuple[dict[tuple[str, str], list[str]], dict]:
    """Run every operation of ``group``; returns {(operation, check title): examples} and the statuses
    seen per operation."""
    schema = schemathesis.openapi.from_dict(served_schema())
    schema.app = get_wsgi_application()
    failures: dict[tuple[str, str], list[str]] = {}
    statuses: dict[str, set[int]] = {}
    operations = [r.ok() for r in schema.get_all_operations() if api_group(r.ok().path) == group]
    assert operations, f"the schema has no {group} operation"
    with keep_db_connection():
        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            seen = statuses.setdefault(label, set())
            for mode in MODES:
                exercise(operation, mode, headers, seen, lambda case, response, exc, label=label: record(
                    failures, label, case, response, exc, headers))  # fmt: skip
    return failures, statuses


def exercise(operation, mode, headers: dict[str, str], seen: set[int], on_failure) -> None:
    """``MAX_EXAMPLES`` derandomized cases of ``mode`` for ``operation``, every check on every answer."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # failures are collected, not raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(headers=headers)
        seen.add(response.status_code)
        try:
            case.validate_response(
                response, headers=headers, checks=ALL_CHECKS, transport_kwargs={"headers": headers}
            )
        except (AssertionError, FailureGroup) as exc:  # a failed check, or several (a BaseExceptionGroup)
            on_failure(case, response, exc)

    run()


def record(failures: dict, label: str, case, response, exc: Exception, headers: dict[str, str]) -> None:
    for failure in getattr(exc, "exceptions", None) or [exc]:
        title = getattr(failure, "title", type(failure).__name__)
        message = getattr(failure, "message", str(failure))
        body = response.text[:300].replace("\n", " ")
        example = (
            f"{case.as_curl_command(headers)}\n"
            f"      -> {response.status_code} {response.headers.get('content-type')}: {body}\n"
            f"      {message.strip()[:400]}"
        )
        failures.setdefault((label, title), []).append(example)


def report(failures: dict[tuple[str, str], list[str]]) -> str:
    lines = []
    for (label, title), examples in sorted(failures.items()):
        smallest = min(examples, key=len)
        lines.append(f"{label} :: {title} ({len(examples)}x)\n    {smallest}")
    return "\n".join(lines)


def test_public_api_passes_every_schemathesis_check(platform_in_test_transaction: Platform, fast_accounts):
    failures, statuses = run_schemathesis(
        PUBLIC, {"Authorization": f"Bearer {platform_in_test_transaction.api_key}"}
    )
    if failures:
        pytest.fail(f"schemathesis, public API ({len(failures)} failing operation x check):\n"
                    + report(failures), pytrace=False)  # fmt: skip
    assert any(200 in seen for seen in statuses.values()), statuses  # the run really reached the data


def test_management_api_passes_every_schemathesis_check(
    platform_in_test_transaction: Platform, fast_accounts
):
    failures, statuses = run_schemathesis(
        MANAGEMENT, {"Authorization": f"Bearer {platform_in_test_transaction.access_token}"}
    )
    if failures:
        pytest.fail(f"schemathesis, management API ({len(failures)} failing operation x check):\n"
                    + report(failures), pytrace=False)  # fmt: skip
    assert any(200 in seen for seen in statuses.values()), statuses
