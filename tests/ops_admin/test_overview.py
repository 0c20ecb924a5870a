"""The admin's operations console, overview page: staff only, the right numbers, replay of dead letters."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from apiplatform.jobs.models import DeadLetter, JobRun
from apiplatform.jobs.schedules import schedules_all, schedules_setup
from billing.models import StripeEvent, StripeEventStatus
from ingestion.models import QualityFlag
from marketdata import services
from marketdata.models import Coin
from tests.ingestion_tasks import worker_tasks
from tests.ops_admin.conftest import external_assets

pytestmark = pytest.mark.django_db


def test_anonymous_and_non_staff_are_sent_to_the_login(client, django_user_model):
    url = reverse("ops:overview")
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    user = django_user_model.objects.create_user(email="member@example.com", password="x" * 12)
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert client.post(reverse("ops:dead-letters-replay")).status_code == 302


def test_admin_index_links_the_console(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert reverse("ops:overview") in html


def _coin(upstream_id: str) -> Coin:
    ids = services.coins_upsert(
        coins=[services.CoinIn(upstream_id, upstream_id[:3], upstream_id)], seen_at=NOW
    )
    now = timezone.now()
    services.snapshots_upsert(
        rows=[services.SnapshotIn(ids[upstream_id], 1.0, 1e6, 1, 1e5, 1.1, 0.9, 0.0, now, now)]
    )
    return Coin.objects.get(pk=ids[upstream_id])


NOW = timezone.now()


def test_overview_shows_the_known_state(staff_client):
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    fresh, late = _coin("fresh-coin"), _coin("late-coin")
    rows = [services.CandleRow(fresh.pk, "1m", minute - timedelta(minutes=1), 1, 1, 1, 1, closed=True)]
    rows.append(services.CandleRow(late.pk, "1m", minute - timedelta(minutes=10), 1, 1, 1, 1, closed=True))
    services.candles_upsert(rows=rows, source="import", now=now)
    schedules_setup()
    job = schedules_all()[0].task
    JobRun.objects.create(
        job=job, outcome=JobRun.Outcome.FAILED, error="boom: upstream down", finished_at=now
    )
    JobRun.objects.create(job="x.old", outcome=JobRun.Outcome.FAILED, started_at=now - timedelta(days=2))
    DeadLetter.objects.create(task_name="billing.apply_stripe_event", app="billing", error="KeyError: 'x'")
    DeadLetter.objects.create(task_name="billing.apply_stripe_event", app="billing", status="resolved")
    QualityFlag.objects.create(
        coin=late, timeframe="1m", kind=QualityFlag.Kind.STALE, range_start=now - timedelta(minutes=10),
        range_end=now,
    )  # fmt: skip
    QualityFlag.objects.create(
        coin=fresh, timeframe="1h", kind=QualityFlag.Kind.JUMP, range_start=now, range_end=now,
        resolved_at=now,
    )  # fmt: skip
    StripeEvent.objects.create(
        event_id="evt_1", type="invoice.paid", created=now, payload={}, status=StripeEventStatus.RECEIVED
    )

    response = staff_client.get(reverse("ops:overview"))
    assert response.status_code == 200
    html = response.content.decode()
    ctx = response.context

    one_minute = next(row for row in ctx["freshness"].value if row.timeframe == "1m")
    assert one_minute.coins == 2 and one_minute.coins_behind == 1  # late-coin ended 9 minutes ago
    assert one_minute.newest_end == minute
    assert '<svg class="ops-chart"' in html and "Ingestion lag per timeframe" in html
    assert ">no data</text>" in html and "no closed candle" in html  # 5m and up: nothing stored, no made-up 0
    assert 'id="fig-failures" class="ops-bad">1<' in html  # the 2-day-old failure is not counted
    assert "boom: upstream down" in html
    assert 'id="fig-dead-letters" class="ops-bad">1<' in html
    assert 'id="fig-flags">1<' in html  # the resolved flag is not open
    assert 'id="fig-stripe" class="ops-bad">1<' in html
    assert "LAT (late-coin)</a> 1m" in html  # the stale coin, linked to its page
    assert reverse("ops:coin", args=["late-coin"]) in html
    schedule = next(s for s in ctx["schedules"] if s.task == job)
    assert schedule.last_run.error == "boom: upstream down"
    assert len(ctx["schedules"]) == len(schedules_all())
    assert not external_assets(html), external_assets(html)


def test_overview_survives_redis_being_unreachable(staff_client, monkeypatch):
    from ingestion import selectors

    def down():
        raise ConnectionError("redis down")

    monkeypatch.setattr(selectors, "upstream_state", down)
    response = staff_client.get(reverse("ops:overview"))
    assert response.status_code == 200
    assert "Unavailable: ConnectionError: redis down" in response.content.decode()


@pytest.fixture
def no_broker(monkeypatch):
    sent = mock.Mock()
    monkeypatch.setattr(worker_tasks.permanent, "apply_async", sent)
    return sent


def test_replay_selected_dead_letters_from_the_overview(
    staff_client, no_broker, django_capture_on_commit_callbacks
):
    for key in ("a", "b", "c"):
        worker_tasks.permanent.apply(args=[key])
    letters = list(DeadLetter.objects.order_by("pk"))
    assert len(letters) == 3
    html = staff_client.get(reverse("ops:overview")).content.decode()
    assert f'name="dead_letter" value="{letters[0].pk}"' in html

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("ops:dead-letters-replay"), {"dead_letter": [letters[0].pk, letters[2].pk]}, follow=True
        )
    assert response.status_code == 200
    assert "2 replayed, 0 skipped" in response.content.decode()
    assert sorted(call.kwargs["args"] for call in no_broker.call_args_list) == [["a"], ["c"]]
    assert list(DeadLetter.objects.order_by("pk").values_list("status", flat=True)) == [
        "replayed", "pending", "replayed"
    ]  # fmt: skip


def test_replay_needs_the_dead_letter_permission(client, django_user_model, no_broker):
    worker_tasks.permanent.apply(args=["a"])
    user = django_user_model.objects.create_user(email="viewer@example.com", password="x" * 12)
    user.is_staff = True
    user.save()
    client.force_login(user)
    letter = DeadLetter.objects.get()
    response = client.post(reverse("ops:dead-letters-replay"), {"dead_letter": [letter.pk]}, follow=True)
    assert "You may not replay dead letters." in response.content.decode()
    letter.refresh_from_db()
    assert letter.status == "pending"
    no_broker.assert_not_called()
