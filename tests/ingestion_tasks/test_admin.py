"""Operator surface: admin lists and actions, and the beat schedule registration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from ingestion.models import DeadLetter, IngestionRun, QualityFlag
from ingestion.schedules import SCHEDULES
from marketdata.services import CoinIn, coins_upsert
from tests.ingestion_tasks import worker_tasks

T0 = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def letters():
    for key in ("a", "b", "c"):
        worker_tasks.permanent.apply(args=[key])
    return list(DeadLetter.objects.order_by("pk"))


@pytest.fixture
def no_broker(monkeypatch):
    sent = mock.Mock()
    monkeypatch.setattr(worker_tasks.permanent, "apply_async", sent)
    return sent


@pytest.mark.django_db
def test_changelists_render_with_filters(admin_client, letters):
    IngestionRun.objects.create(job="ingestion.refresh_markets", task_id="t-1", outcome="success")
    coin = coins_upsert(coins=[CoinIn("alpha", "alp", "Alpha")])["alpha"]
    QualityFlag.objects.create(
        coin_id=coin, timeframe="1m", kind="missing", range_start=T0, range_end=T0 + timedelta(minutes=5)
    )
    for model, query in (
        ("ingestionrun", "?outcome=success"),
        ("deadletter", "?status=pending"),
        ("qualityflag", "?state=open&kind=missing"),
    ):
        response = admin_client.get(reverse(f"admin:ingestion_{model}_changelist") + query)
        assert response.status_code == 200, model
    page = admin_client.get(reverse("admin:ingestion_deadletter_change", args=[letters[0].pk]))
    assert b"Replay" in page.content
    assert b"PermanentError" in page.content  # the traceback is shown
    for model, obj in (
        ("ingestionrun", IngestionRun.objects.get()),
        ("qualityflag", QualityFlag.objects.get()),
    ):
        assert admin_client.get(reverse(f"admin:ingestion_{model}_change", args=[obj.pk])).status_code == 200


@pytest.mark.django_db
def test_replay_button_replays_one_dead_letter_after_commit(
    admin_client, letters, no_broker, django_capture_on_commit_callbacks
):
    target = letters[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:ingestion_deadletter_replay", args=[target.pk]))
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.status == "replayed"
    no_broker.assert_called_once()
    assert no_broker.call_args.kwargs["args"] == ["b"]
    assert admin_client.get(reverse("admin:ingestion_deadletter_replay", args=[target.pk])).status_code == 405
    assert DeadLetter.objects.filter(status="pending").count() == 2


@pytest.mark.django_db
def test_bulk_replay_and_resolve_actions(
    admin_client, letters, no_broker, django_capture_on_commit_callbacks
):
    url = reverse("admin:ingestion_deadletter_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            url, {"action": "replay_selected", "_selected_action": [letters[0].pk, letters[1].pk]}
        )
    assert no_broker.call_count == 2
    admin_client.post(url, {"action": "resolve_selected", "_selected_action": [letters[2].pk]})
    statuses = dict(DeadLetter.objects.values_list("pk", "status"))
    assert statuses == {letters[0].pk: "replayed", letters[1].pk: "replayed", letters[2].pk: "resolved"}


@pytest.mark.django_db
def test_resolve_quality_flags_action(admin_client):
    coin = coins_upsert(coins=[CoinIn("alpha", "alp", "Alpha")])["alpha"]
    flag = QualityFlag.objects.create(
        coin_id=coin, timeframe="1m", kind="jump", range_start=T0, range_end=T0 + timedelta(minutes=1)
    )
    admin_client.post(
        reverse("admin:ingestion_qualityflag_changelist"),
        {"action": "resolve_selected", "_selected_action": [flag.pk]},
    )
    flag.refresh_from_db()
    assert flag.resolved_at is not None
    assert "admin@example.com" in flag.resolution


@pytest.mark.django_db
def test_setup_schedules_is_idempotent_and_keeps_operator_edits():
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)
    refresh = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert refresh.interval.every == 60 and refresh.expire_seconds == 55
    assert PeriodicTask.objects.get(task="ingestion.sync_universe").crontab.hour == "3"

    refresh.enabled = False
    refresh.interval = None
    refresh.crontab = PeriodicTask.objects.get(task="ingestion.sync_universe").crontab
    refresh.save()
    call_command("setup_schedules")
    assert PeriodicTask.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)
    kept = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert kept.crontab is not None and kept.enabled is False

    call_command("setup_schedules", "--reset")
    restored = PeriodicTask.objects.get(task="ingestion.refresh_markets")
    assert restored.interval.every == 60 and restored.crontab is None
    assert restored.enabled is False  # reset restores the schedule, not the operator's pause


def test_every_scheduled_task_is_registered():
    from apiplatform.celery import app

    app.loader.import_default_modules()
    for spec in SCHEDULES:
        assert spec.task in app.tasks, spec.task
