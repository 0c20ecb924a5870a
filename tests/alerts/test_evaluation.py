"""Evaluation of alerts after a refresh: once per crossing, cooldown, change windows, indicators,
and a constant number of queries however many alerts there are."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from marketdata.alerts import hooks, services
from marketdata.alerts.evaluation import alerts_evaluate
from marketdata.alerts.models import Alert, Delivery

from .conftest import set_price, write_closes

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(make_org):
    org = make_org()
    from marketdata.alerts.models import WebhookEndpoint

    return WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/x", secret="whsec_t"
    )


def make_alert(endpoint, coin, condition, **kwargs) -> Alert:
    return services.alert_create(
        organization_id=endpoint.organization_id,
        endpoint=endpoint,
        coin_id=coin,
        condition=condition,
        **kwargs,
    )


def evaluate_at(now, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # deliveries are recorded, not sent here
        return alerts_evaluate(now=now)


def test_price_alert_fires_once_per_crossing(endpoint, coin, django_capture_on_commit_callbacks):
    alert = make_alert(endpoint, coin, {"type": "price", "direction": "above", "level": 100.0})
    now = datetime.now(UTC)
    fired = []
    for minute, price in enumerate([90, 95, 110, 120, 130, 99, 98, 101, 102]):
        set_price(coin, price)
        fired.append(evaluate_at(now + timedelta(minutes=minute), django_capture_on_commit_callbacks).fired)
    # 90 only sets the side; 110 crosses up; 99 crosses down (not our direction); 101 crosses up again
    assert fired == [0, 0, 1, 0, 0, 0, 0, 1, 0]
    alert.refresh_from_db()
    assert (alert.last_side, alert.fired_count) == ("above", 2)
    deliveries = list(Delivery.objects.filter(alert=alert).order_by("id"))
    assert len(deliveries) == 2
    assert [d.status for d in deliveries] == ["pending", "pending"]
    first = json.loads(deliveries[0].body)
    assert first["type"] == "alert.triggered"
    assert first["data"]["alert"]["coin"] == "bitcoin"
    assert first["data"]["value"] == 110 and first["data"]["previous_side"] == "below"


def test_existing_condition_does_not_fire_on_creation(endpoint, coin, django_capture_on_commit_callbacks):
    make_alert(endpoint, coin, {"type": "price", "direction": "above", "level": 100.0})
    set_price(coin, 150)
    assert evaluate_at(datetime.now(UTC), django_capture_on_commit_callbacks).fired == 0


def test_cooldown_suppresses_a_second_crossing(endpoint, coin, django_capture_on_commit_callbacks):
    make_alert(endpoint, coin, {"type": "price", "direction": "below", "level": 50.0}, cooldown_seconds=3600)
    t0 = datetime.now(UTC)
    steps = [(0, 60), (1, 40), (2, 60), (3, 40), (70, 60), (71, 40)]  # (minutes after t0, price)
    fired = []
    for minutes, price in steps:
        set_price(coin, price)
        fired.append(evaluate_at(t0 + timedelta(minutes=minutes), django_capture_on_commit_callbacks).fired)
    assert fired == [0, 1, 0, 0, 0, 1]  # the crossing at minute 3 is inside the hour's cooldown


def test_change_over_window(endpoint, coin, django_capture_on_commit_callbacks):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    write_closes(coin, "1m", now - timedelta(minutes=70), [100.0] * 70)  # an hour ago: 100
    make_alert(endpoint, coin, {"type": "change", "window": "1h", "direction": "above", "level": 5.0})
    set_price(coin, 103)
    assert evaluate_at(now, django_capture_on_commit_callbacks).fired == 0  # +3 %: below
    set_price(coin, 106)
    result = evaluate_at(now + timedelta(seconds=30), django_capture_on_commit_callbacks)
    assert result.fired == 1
    body = json.loads(Delivery.objects.get().body)
    assert body["data"]["value"] == pytest.approx(6.0)


def test_rsi_crosses_above_70(endpoint, coin, django_capture_on_commit_callbacks):
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=200)
    closes = [100.0 + (i % 2) for i in range(100)]  # flat: RSI about 50
    write_closes(coin, "1h", start, closes)
    make_alert(
        endpoint,
        coin,
        {"type": "indicator", "indicator": "rsi", "timeframe": "1h", "direction": "above", "level": 70},
    )
    set_price(coin, 100)
    assert evaluate_at(datetime.now(UTC), django_capture_on_commit_callbacks).fired == 0
    assert Alert.objects.get().last_side == "below"
    write_closes(coin, "1h", start + timedelta(hours=100), [101.0 + 2 * i for i in range(10)])  # a rally
    result = evaluate_at(datetime.now(UTC), django_capture_on_commit_callbacks)
    assert result.fired == 1
    assert json.loads(Delivery.objects.get().body)["data"]["value"] > 70


def test_macd_signal_cross(endpoint, coin, django_capture_on_commit_callbacks):
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=200)
    falling = [200.0 - 0.02 * i * i for i in range(80)]  # an accelerating fall: MACD below its signal
    write_closes(coin, "1h", start, falling)
    make_alert(
        endpoint,
        coin,
        {"type": "indicator", "indicator": "macd_signal_cross", "timeframe": "1h", "direction": "above"},
    )
    assert Alert.objects.get().level == 0.0
    assert evaluate_at(datetime.now(UTC), django_capture_on_commit_callbacks).fired == 0
    assert Alert.objects.get().last_side == "below"
    write_closes(coin, "1h", start + timedelta(hours=80), [75.0 + 3 * i for i in range(15)])
    assert evaluate_at(datetime.now(UTC), django_capture_on_commit_callbacks).fired == 1


def test_queries_do_not_grow_with_alerts(
    endpoint, coin, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    write_closes(coin, "1m", now - timedelta(minutes=70), [100.0] * 70)
    write_closes(coin, "1h", now - timedelta(hours=60), [100.0 + i for i in range(50)])
    kinds = [
        {"type": "price", "direction": "above", "level": 100.0},
        {"type": "change", "window": "1h", "direction": "above", "level": 1.0},
        {"type": "indicator", "indicator": "rsi", "timeframe": "1h", "direction": "below", "level": 30},
    ]
    for i in range(60):
        make_alert(endpoint, coin, kinds[i % 3])
    set_price(coin, 90)
    with django_assert_max_num_queries(8):  # lock, alerts, prices, 1 window, 1 timeframe, (+ writes)
        alerts_evaluate(now=now)
    set_price(coin, 110)
    with django_capture_on_commit_callbacks(execute=False), django_assert_max_num_queries(12):
        result = alerts_evaluate(now=now + timedelta(seconds=10))
    assert result.fired == 40  # the price and the change alerts crossed up; the RSI ones did not
    assert Delivery.objects.count() == 40


def test_write_cycle_hook_queues_evaluation_only_with_active_alerts(
    endpoint, coin, monkeypatch, django_capture_on_commit_callbacks
):
    from marketdata.alerts import tasks

    queued = []
    monkeypatch.setattr(tasks.evaluate, "apply_async", lambda **kw: queued.append(kw))
    now = datetime.now(UTC)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        hooks.candles_written(now=now)
    assert callbacks == [] and queued == []  # nobody's alert: nothing queued
    make_alert(endpoint, coin, {"type": "price", "direction": "above", "level": 1.0})
    with django_capture_on_commit_callbacks(execute=True):
        hooks.candles_written(now=now)
    assert queued == [{"kwargs": {"at": now.isoformat()}}]
