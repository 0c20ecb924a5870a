"""Dead letters say which app's task failed (the ``app`` column, list filter in Jobs → Dead letters)."""

from __future__ import annotations

import importlib
from unittest import mock

import pytest
from django.apps import apps

from accounts import tasks as accounts_tasks
from apiplatform.jobs.models import DeadLetter
from marketdata import tasks as marketdata_tasks
from tests.ingestion_tasks import worker_tasks

pytestmark = pytest.mark.django_db


def test_dead_letter_of_an_accounts_task_is_filed_under_accounts(monkeypatch):
    failing = mock.Mock(side_effect=ValueError("no such user"))
    monkeypatch.setattr(accounts_tasks, "email_verification_send", failing)
    result = accounts_tasks.send_verification_email.apply(args=[123])
    assert result.failed()
    letter = DeadLetter.objects.get(task_name="accounts.send_verification_email")
    assert letter.app == "accounts"
    assert letter.args == [123]


def test_the_app_comes_from_the_module_that_declares_the_task(monkeypatch):
    monkeypatch.setattr(
        marketdata_tasks, "latest_indicators_refresh", mock.Mock(side_effect=ValueError("bad timeframe"))
    )
    marketdata_tasks.refresh_screener.apply(kwargs={"timeframes": ["7m"]})
    assert DeadLetter.objects.get(task_name="marketdata.refresh_screener").app == "marketdata"
    worker_tasks.permanent.apply(args=["x"])  # a module outside any app: the name's first part
    assert DeadLetter.objects.get(task_name="tests.permanent").app == "tests"


def test_migration_fills_the_app_of_existing_dead_letters():
    migration = importlib.import_module("apiplatform.jobs.migrations.0002_deadletter_app")
    for name in ("billing.flush_usage", "ingestion.refresh_screener", "ingestion.backfill"):
        DeadLetter.objects.create(task_name=name)
    migration.fill_app(apps, None)
    assert dict(DeadLetter.objects.values_list("task_name", "app")) == {
        "billing.flush_usage": "billing",
        "ingestion.refresh_screener": "marketdata",
        "ingestion.backfill": "ingestion",
    }
