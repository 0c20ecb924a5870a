"""The command's interface: one line per check, --json, exit status 1 only when a check fails."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apiplatform.jobs.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)


def doctor(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("doctor", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_json_lists_each_check_and_a_warning_does_not_fail(settings):
    settings.STRIPE_SECRET_KEY = ""
    code, out = doctor("--json", "--check", "dead_letters", "--check", "stripe", "--check", "migrations")
    assert code == 0
    assert json.loads(out) == [
        {"check": "migrations", "ok": True, "status": "ok", "detail": "all applied"},
        {"check": "dead_letters", "ok": True, "status": "ok", "detail": "none waiting"},
        {"check": "stripe", "ok": True, "status": "warn",
         "detail": "not configured (STRIPE_SECRET_KEY empty): billing endpoints answer 503"},
    ]  # fmt: skip


def test_a_failing_check_exits_1_and_prints_a_line_per_check():
    DeadLetter.objects.create(task_name="ingestion.backfill", app="ingestion")
    code, out = doctor("--check", "dead_letters", "--check", "migrations")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["ok", "migrations", "all", "applied"]
    assert lines[1].startswith("FAIL  dead_letters  1 waiting")
    assert lines[-1] == "2 checks, 1 failed"


def test_an_unknown_check_is_refused_with_the_known_names():
    with pytest.raises(CommandError, match=r"unknown check\(s\): nope .*dead_letters"):
        call_command("doctor", "--check", "nope")
