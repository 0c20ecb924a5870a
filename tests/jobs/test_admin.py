"""Operator surface of dead letters: Jobs → Dead letters (replay one or many, resolve)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from apiplatform.jobs.models import DeadLetter
from tests.ingestion_tasks import worker_tasks


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
def test_replay_button_replays_one_dead_letter_after_commit(
    admin_client, letters, no_broker, django_capture_on_commit_callbacks
):
    target = letters[1]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:jobs_deadletter_replay", args=[target.pk]))
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.status == "replayed"
    no_broker.assert_called_once()
    assert no_broker.call_args.kwargs["args"] == ["b"]
    assert admin_client.get(reverse("admin:jobs_deadletter_replay", args=[target.pk])).status_code == 405
    assert DeadLetter.objects.filter(status="pending").count() == 2


@pytest.mark.django_db
def test_bulk_replay_and_resolve_actions(
    admin_client, letters, no_broker, django_capture_on_commit_callbacks
):
    url = reverse("admin:jobs_deadletter_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            url, {"action": "replay_selected", "_selected_action": [letters[0].pk, letters[1].pk]}
        )
    assert no_broker.call_count == 2
    admin_client.post(url, {"action": "resolve_selected", "_selected_action": [letters[2].pk]})
    statuses = dict(DeadLetter.objects.values_list("pk", "status"))
    assert statuses == {letters[0].pk: "replayed", letters[1].pk: "replayed", letters[2].pk: "resolved"}
