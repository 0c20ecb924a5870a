"""The admin's operations console, coin page: snapshot, candles and gaps, flags, range re-fetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from ingestion import tasks as ingestion_tasks
from ingestion.models import QualityFlag
from marketdata import services
from tests.ops_admin.conftest import external_assets

pytestmark = pytest.mark.django_db


@pytest.fixture
def coin():
    now = timezone.now()
    ids = services.coins_upsert(coins=[services.CoinIn("bitcoin", "btc", "Bitcoin")], seen_at=now)
    services.snapshots_upsert(
        rows=[services.SnapshotIn(ids["bitcoin"], 65432.5, 1.2e12, 1, 3e10, 66000.0, 64000.0, 1.5, now, now)]
    )
    return ids["bitcoin"]


@pytest.fixture
def queued(monkeypatch):
    sent = mock.Mock()
    monkeypatch.setattr(ingestion_tasks.refetch_range, "apply_async", sent)
    return sent


def _hour(t: datetime) -> datetime:
    return datetime.fromtimestamp(t.timestamp() // 3600 * 3600, UTC)


def test_coin_page_shows_snapshot_candles_gaps_and_flags(admin_client, coin):
    now = timezone.now()
    current = _hour(now)  # the hour in progress: not counted
    # the 10 hours before it, without hours 4 and 5 before it: 8 candles, one gap of 2 buckets
    starts = [current - timedelta(hours=h) for h in range(1, 11) if h not in (4, 5)]
    rows = [services.CandleRow(coin, "1h", s, 1, 1, 1, 1, closed=True) for s in starts]
    services.candles_upsert(rows=rows, source="import", now=now)
    QualityFlag.objects.create(
        coin_id=coin, timeframe="1h", kind=QualityFlag.Kind.JUMP, range_start=starts[0], range_end=current
    )

    response = admin_client.get(reverse("ops:coin", args=["bitcoin"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="snapshot-price">65432.5<' in html
    hourly = next(s for s in response.context["series"] if s.timeframe == "1h")
    assert hourly.candles == 8 and hourly.expected == 30 * 24
    assert hourly.missing == 2  # before the oldest stored hour is the series' start, not a gap
    assert hourly.gaps == [(current - timedelta(hours=5), current - timedelta(hours=3))]
    assert 'class="ops-missing ops-bad">2<' in html
    assert ">jump</a>" in html
    assert not external_assets(html), external_assets(html)


def test_unknown_coin_is_404(admin_client):
    assert admin_client.get(reverse("ops:coin", args=["nope"])).status_code == 404
    response = admin_client.get(reverse("ops:coin-lookup"), {"coin": " Bitcoin "})
    assert response.status_code == 302 and response["Location"] == reverse("ops:coin", args=["bitcoin"])


def test_refetch_form_raises_a_flag_and_queues_the_refetch_task(
    admin_client, coin, queued, django_capture_on_commit_callbacks
):
    end = _hour(timezone.now()) - timedelta(hours=2)
    start = end - timedelta(hours=6)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("ops:coin", args=["bitcoin"]),
            {
                "timeframe": "1h",
                "start": start.strftime("%Y-%m-%d %H:%M"),
                "end": end.strftime("%Y-%m-%d %H:%M"),
            },
            follow=True,
        )
    assert response.status_code == 200
    flag = QualityFlag.objects.get(coin_id=coin)
    assert (flag.kind, flag.timeframe, flag.range_start, flag.range_end) == ("missing", "1h", start, end)
    assert flag.resolved_at is None and flag.refetch_count == 1
    assert flag.details["requested_by"]
    queued.assert_called_once_with(kwargs={"flag_id": flag.pk}, task_id=flag.refetch_task_id)
    assert f"Re-fetch scheduled (quality flag {flag.pk}" in response.content.decode()


def test_refetch_form_refuses_a_bad_range_and_queues_nothing(admin_client, coin, queued):
    now = timezone.now()
    cases = [
        (now - timedelta(hours=1), now - timedelta(hours=2), "The end must be after the start."),
        (now - timedelta(hours=1), now + timedelta(hours=2), "The end must not be in the future."),
        (now - timedelta(days=40), now - timedelta(days=1), "At most 31 days per request."),
    ]
    for start, end, error in cases:
        response = admin_client.post(
            reverse("ops:coin", args=["bitcoin"]),
            {
                "timeframe": "1h",
                "start": start.strftime("%Y-%m-%d %H:%M"),
                "end": end.strftime("%Y-%m-%d %H:%M"),
            },
        )
        assert response.status_code == 200
        assert error in response.content.decode()
    assert not QualityFlag.objects.exists()
    queued.assert_not_called()


def test_refetch_needs_the_quality_flag_permission(client, django_user_model, coin, queued):
    user = django_user_model.objects.create_user(email="viewer@example.com", password="x" * 12)
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_qualityflag"))
    client.force_login(user)
    end = timezone.now() - timedelta(hours=1)
    response = client.post(
        reverse("ops:coin", args=["bitcoin"]),
        {"timeframe": "1h", "start": (end - timedelta(hours=1)).isoformat(), "end": end.isoformat()},
        follow=True,
    )
    assert "You may not schedule re-fetches." in response.content.decode()
    assert not QualityFlag.objects.exists()
    queued.assert_not_called()
