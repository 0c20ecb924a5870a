"""Webhook deliveries against a real receiver on loopback: signature, retries on a simulated clock,
every attempt recorded, dead letter after the last try, replay (customer and operator)."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apiplatform.jobs.models import DeadLetter
from apiplatform.jobs.services import dead_letter_replay
from marketdata.alerts import services, signing, tasks
from marketdata.alerts.evaluation import alerts_evaluate
from marketdata.alerts.models import Alert, Delivery, DeliveryAttempt, WebhookEndpoint

from .conftest import owner_of, set_price

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed")]


@pytest.fixture
def org(make_org):
    return make_org()


@pytest.fixture
def endpoint(org, receiver):
    return services.endpoint_create(organization_id=org.pk, url=receiver.url)


@pytest.fixture
def fired(endpoint, coin, django_capture_on_commit_callbacks) -> Delivery:
    """One alert that fired: its delivery is recorded (pending), nothing sent yet."""
    services.alert_create(
        organization_id=endpoint.organization_id,
        endpoint=endpoint,
        coin_id=coin,
        condition={"type": "price", "direction": "above", "level": 100.0},
        name="BTC above 100",
    )
    set_price(coin, 90)
    with django_capture_on_commit_callbacks(execute=False):
        alerts_evaluate()
    set_price(coin, 101)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = alerts_evaluate()
    assert result.fired == 1 and len(callbacks) == 1  # the send is queued only after commit
    return Delivery.objects.get(pk=result.delivery_ids[0])


def test_signed_delivery_is_verified_by_the_receiver(fired, endpoint, receiver):
    assert fired.status == "pending" and not receiver.received  # recorded before anything is sent
    outcome = services.delivery_attempt(delivery_id=fired.pk, attempt=1)
    assert outcome.attempted
    (request,) = receiver.received
    assert request.path == "/hooks/candlestack"
    assert signing.verify(secret=endpoint.secret, header=request.headers[signing.HEADER], body=request.body)
    assert not signing.verify(secret="whsec_wrong", header=request.headers[signing.HEADER], body=request.body)
    assert not signing.verify(  # the body is covered by the signature
        secret=endpoint.secret, header=request.headers[signing.HEADER], body=request.body + b" "
    )
    event = json.loads(request.body)
    assert request.headers["Candlestack-Event-Id"] == event["id"] == fired.event_id
    assert event["type"] == "alert.triggered"
    assert event["data"]["alert"]["name"] == "BTC above 100"
    assert event["data"]["price"] == 101
    fired.refresh_from_db()
    assert fired.status == "succeeded" and fired.delivered_at is not None
    attempt = DeliveryAttempt.objects.get(delivery=fired)
    assert (attempt.number, attempt.status_code, attempt.success, attempt.response_excerpt) == (
        1,
        200,
        True,
        "ok",
    )


def test_failures_are_retried_with_backoff_then_succeed(fired, receiver, settings):
    receiver.reply((500, {}, b"boom"), 503, (200, {}, b"thanks"))
    t0 = fired.created_at
    outcome = services.delivery_attempt(delivery_id=fired.pk, attempt=1, now=t0)
    fired.refresh_from_db()
    assert outcome.attempted and fired.status == "retrying"
    assert fired.next_attempt_at == t0 + timedelta(seconds=settings.ALERTS_WEBHOOK_RETRY_BASE)
    # not due yet: the dispatcher leaves it
    assert services.deliveries_dispatch_due(now=t0 + timedelta(seconds=30)) == 0
    t1 = t0 + timedelta(seconds=61)
    assert services.deliveries_dispatch_due(now=t1) == 1
    fired.refresh_from_db()
    assert fired.next_attempt_at == t1 + services.CLAIM  # claimed: not handed out twice
    assert services.deliveries_dispatch_due(now=t1) == 0
    services.delivery_attempt(delivery_id=fired.pk, attempt=2, now=t1)
    fired.refresh_from_db()
    assert fired.next_attempt_at == t1 + timedelta(seconds=2 * settings.ALERTS_WEBHOOK_RETRY_BASE)
    duplicate = services.delivery_attempt(delivery_id=fired.pk, attempt=2, now=t1)  # a redelivered message
    assert not duplicate.attempted
    services.delivery_attempt(delivery_id=fired.pk, attempt=3, now=t1 + timedelta(minutes=3))
    fired.refresh_from_db()
    assert fired.status == "succeeded" and fired.attempts == 3
    attempts = list(DeliveryAttempt.objects.filter(delivery=fired).order_by("number"))
    assert [(a.status_code, a.success, a.response_excerpt) for a in attempts] == [
        (500, False, "boom"),
        (503, False, "status 503"),
        (200, True, "thanks"),
    ]
    assert all(a.duration_ms >= 0 for a in attempts) and attempts[0].error == "HTTP 500"
    assert len(receiver.received) == 3
    assert len({r.headers["Candlestack-Event-Id"] for r in receiver.received}) == 1  # the same event


def test_retry_schedule_spans_24_hours(settings):
    schedule = services.retry_schedule()
    assert schedule[0] == timedelta(0) and schedule[1] == timedelta(minutes=1)
    assert schedule[-1] == timedelta(hours=24)
    gaps = [b - a for a, b in itertools.pairwise(schedule)]
    assert max(gaps) <= timedelta(seconds=settings.ALERTS_WEBHOOK_RETRY_MAX)
    assert gaps[:5] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16)]


def test_last_failure_is_dead_lettered_and_the_customer_replays_it(
    fired, receiver, jwt_client, org, eager, django_capture_on_commit_callbacks
):
    receiver.reply(500)
    Delivery.objects.filter(pk=fired.pk).update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    # the task through Celery (not a plain call): the house's task base writes the dead letter
    tasks.deliver.apply(kwargs={"delivery_id": fired.pk, "attempt": 1})
    fired.refresh_from_db()
    assert fired.status == "dead" and fired.next_attempt_at is None
    letter = DeadLetter.objects.get(task_name="alerts.deliver")
    assert letter.kwargs == {"delivery_id": fired.pk, "attempt": 1} and letter.status == "pending"
    assert letter.app == "alerts"

    receiver.reply(200)
    client = jwt_client(owner_of(org))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/v1/account/deliveries/{fired.pk}/replay")
    assert response.status_code == 202, response.content
    fired.refresh_from_db()
    assert fired.status == "succeeded" and fired.attempts == 2
    last = DeliveryAttempt.objects.get(delivery=fired, number=2)
    assert last.manual and last.success
    letter.refresh_from_db()
    assert letter.status == "resolved"  # the operator does not replay it a second time
    detail = client.get(f"/v1/account/deliveries/{fired.pk}").json()
    assert [a["status_code"] for a in detail["attempt_list"]] == [500, 200]
    assert detail["payload"]["id"] == fired.event_id


def test_operator_replays_the_dead_letter(fired, receiver, eager, django_capture_on_commit_callbacks):
    receiver.reply(500)
    Delivery.objects.filter(pk=fired.pk).update(created_at=timezone.now() - timedelta(hours=25))
    tasks.deliver.apply(kwargs={"delivery_id": fired.pk, "attempt": 1})
    letter = DeadLetter.objects.get(task_name="alerts.deliver")
    receiver.reply(200)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_replay(dead_letter_id=letter.pk)
    fired.refresh_from_db()
    assert fired.status == "succeeded"
    assert DeliveryAttempt.objects.get(delivery=fired, number=2).manual
    letter.refresh_from_db()
    assert letter.replay_succeeded_at is not None


def test_test_delivery_endpoint(org, endpoint, receiver, jwt_client):
    client = jwt_client(owner_of(org))
    response = client.post(f"/v1/account/webhook-endpoints/{endpoint.pk}/test")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["event_type"] == "webhook.test" and body["status"] == "succeeded"
    assert body["attempt_list"][0]["status_code"] == 200
    (request,) = receiver.received
    assert signing.verify(secret=endpoint.secret, header=request.headers[signing.HEADER], body=request.body)
    receiver.reply((404, {}, b"no such hook"))
    failed = client.post(f"/v1/account/webhook-endpoints/{endpoint.pk}/test").json()
    assert failed["status"] == "failed" and failed["next_attempt_at"] is None  # a test is never retried
    assert failed["attempt_list"][0]["response_excerpt"] == "no such hook"


def test_rotated_secret_signs_the_next_delivery(org, endpoint, receiver, jwt_client):
    client = jwt_client(owner_of(org))
    new_secret = client.post(f"/v1/account/webhook-endpoints/{endpoint.pk}/rotate-secret").json()["secret"]
    assert new_secret != endpoint.secret
    client.post(f"/v1/account/webhook-endpoints/{endpoint.pk}/test")
    header, body = receiver.received[-1].headers[signing.HEADER], receiver.received[-1].body
    assert signing.verify(secret=new_secret, header=header, body=body)
    assert not signing.verify(secret=endpoint.secret, header=header, body=body)
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == new_secret


# --- a storm: the first attempts of many firings are queued together ------------------------------------
@pytest.fixture
def storm(org, endpoint, other_receiver, make_coins, django_capture_on_commit_callbacks):
    """45 alerts on two endpoints fire in one pass; returns (result, after-commit callbacks)."""
    other = services.endpoint_create(organization_id=org.pk, url=other_receiver.url)
    for i, coin_id in enumerate(make_coins(45)):
        services.alert_create(
            organization_id=org.pk,
            endpoint=endpoint if i % 3 else other,
            coin_id=coin_id,
            condition={"type": "price", "direction": "above", "level": 100.0},
        )
        set_price(coin_id, 90)
    with django_capture_on_commit_callbacks(execute=False):
        alerts_evaluate()
    for coin_id in Alert.objects.values_list("coin_id", flat=True):
        set_price(coin_id, 101)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = alerts_evaluate()
    assert result.fired == 45
    return result, callbacks


@pytest.fixture
def make_coins(db):
    from marketdata import services as market

    def make(n: int) -> list[int]:
        ids = market.coins_upsert(coins=[market.CoinIn(f"c-{i}", f"c{i}", f"C {i}") for i in range(n)])
        return [ids[f"c-{i}"] for i in range(n)]

    return make


def test_a_storm_is_queued_as_one_message_and_split_by_endpoint(storm, monkeypatch):
    result, callbacks = storm
    sent = []
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda **kw: pytest.fail("one message per delivery"))
    for callback in callbacks:
        callback()
    (message,) = sent  # 45 firings: one broker message
    assert sorted(pk for pk, _n in message["deliveries"]) == sorted(result.delivery_ids)
    assert {n for _pk, n in message["deliveries"]} == {1}
    sent.clear()
    tasks.deliver_batch(deliveries=message["deliveries"])  # the worker splits it into chunks
    chunks = [kw["deliveries"] for kw in sent]
    assert sorted(pk for chunk in chunks for pk, _n in chunk) == sorted(result.delivery_ids)
    assert all(len(chunk) <= services.DELIVER_CHUNK for chunk in chunks)
    endpoints = [
        list(Delivery.objects.filter(pk__in=[pk for pk, _n in c]).values_list("endpoint_id", flat=True))
        for c in chunks
    ]
    switches = sum(1 for e in endpoints for a, b in itertools.pairwise(e) if a != b)
    assert switches <= 1  # each endpoint's deliveries sit together (one chunk may hold the boundary)


def test_a_chunk_attempts_each_delivery_once(storm, receiver, other_receiver, monkeypatch):
    result, _callbacks = storm
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda **kw: pytest.fail("nothing left over"))
    chunk = [[pk, 1] for pk in result.delivery_ids[:10]]
    assert tasks.deliver_batch(deliveries=chunk) == 10
    assert len(receiver.received) + len(other_receiver.received) == 10
    tasks.deliver_batch(deliveries=chunk)  # a redelivered message: those attempts were made
    assert len(receiver.received) + len(other_receiver.received) == 10
    assert set(Delivery.objects.filter(pk__in=result.delivery_ids[:10]).values_list("status", flat=True)) == {
        "succeeded"
    }
    assert DeliveryAttempt.objects.filter(delivery_id__in=result.delivery_ids[:10]).count() == 10


def test_a_chunk_over_its_time_budget_queues_the_rest(storm, monkeypatch):
    result, _callbacks = storm
    sent = []
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    monkeypatch.setattr(services, "CHUNK_BUDGET_SECONDS", 0.0)
    pairs = [(pk, 1) for pk in result.delivery_ids[:5]]
    outcomes, rest = services.deliveries_attempt_chunk(pairs=pairs, budget_seconds=0.0)
    assert outcomes == [] and rest == pairs
    tasks.deliver_batch(deliveries=[list(p) for p in pairs])
    assert sent == [{"deliveries": [list(p) for p in pairs]}]
    assert Delivery.objects.filter(pk__in=result.delivery_ids, attempts=0).count() == 45


def test_a_last_attempt_failing_in_a_chunk_writes_the_deliver_dead_letter(
    fired, receiver, eager, django_capture_on_commit_callbacks
):
    receiver.reply(500)
    Delivery.objects.filter(pk=fired.pk).update(created_at=timezone.now() - timedelta(hours=25))
    tasks.deliver_batch.apply(kwargs={"deliveries": [[fired.pk, 1]]})
    fired.refresh_from_db()
    assert fired.status == "dead"
    letter = DeadLetter.objects.get()
    assert letter.task_name == "alerts.deliver" and letter.app == "alerts"
    assert letter.kwargs == {"delivery_id": fired.pk, "attempt": 1}
    receiver.reply(200)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_replay(dead_letter_id=letter.pk)  # the operator's replay: one more attempt
    fired.refresh_from_db()
    assert fired.status == "succeeded"


def test_dispatcher_queues_due_retries_in_one_message(storm, monkeypatch, django_capture_on_commit_callbacks):
    result, _callbacks = storm
    Delivery.objects.filter(pk__in=result.delivery_ids).update(
        status="retrying", attempts=2, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    sent = []
    monkeypatch.setattr(tasks.deliver_batch, "apply_async", lambda **kw: sent.append(kw["kwargs"]))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_dispatch_due() == 45
    (message,) = sent
    assert sorted(message["deliveries"]) == sorted([pk, 3] for pk in result.delivery_ids)
