"""Operator surface of ingestion: admin lists and actions (dead letters: tests/jobs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from apiplatform.jobs.models import DeadLetter, JobRun
from ingestion.models import QualityFlag
from marketdata.services import CoinIn, coins_upsert
from tests.ingestion_tasks import worker_tasks

T0 = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def letters():
    for key in ("a", "b", "c"):
        worker_tasks.permanent.apply(args=[key])
    return list(DeadLetter.objects.order_by("pk"))


@pytest.mark.django_db
def test_changelists_render_with_filters(admin_client, letters):
    JobRun.objects.create(job="ingestion.refresh_markets", task_id="t-1", outcome="success")
    coin = coins_upsert(coins=[CoinIn("alpha", "alp", "Alpha")])["alpha"]
    QualityFlag.objects.create(
        coin_id=coin, timeframe="1m", kind="missing", range_start=T0, range_end=T0 + timedelta(minutes=5)
    )
    for model, query in (
        ("jobs_jobrun", "?outcome=success"),
        ("jobs_deadletter", "?status=pending"),
        ("ingestion_qualityflag", "?state=open&kind=missing"),
    ):
        response = admin_client.get(reverse(f"admin:{model}_changelist") + query)
        assert response.status_code == 200, model
    page = admin_client.get(reverse("admin:jobs_deadletter_change", args=[letters[0].pk]))
    assert b"Replay" in page.content
    assert b"PermanentError" in page.content  # the traceback is shown
    for model, obj in (
        ("jobs_jobrun", JobRun.objects.get()),
        ("ingestion_qualityflag", QualityFlag.objects.get()),
    ):
        assert admin_client.get(reverse(f"admin:{model}_change", args=[obj.pk])).status_code == 200


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
