"""Writes of the alerts app: endpoints, alerts, deliveries and their attempts (docs/alerts.md).

Deliveries follow Saleor's pattern: the delivery (event id, exact body) is recorded in the same
transaction as the state change that caused it, sent after commit, and every attempt is recorded
with its status, latency and response excerpt. Failed attempts are retried on a schedule kept in
the database (``next_attempt_at``; the ``alerts.dispatch_due`` job sends what is due) for
``ALERTS_WEBHOOK_RETRY_WINDOW`` (24 h); after the last one the delivery is ``dead`` and its task
writes a dead letter (apiplatform.jobs), which the operator or the customer can replay.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from apiplatform.jobs.models import DeadLetter
from apiplatform.jobs.services import dead_letter_resolve
from apiplatform.problems import ProblemError
from marketdata.alerts import conditions, encryption, signing, transport
from marketdata.alerts import problems as p
from marketdata.alerts.models import Alert, Delivery, DeliveryAttempt, WebhookEndpoint
from marketdata.alerts.selectors import Firing, coin_upstream_ids

logger = logging.getLogger(__name__)

API_VERSION = "v1"
DELIVER_TASK = "alerts.deliver"
#: A delivery handed to the broker is not picked up again by the dispatcher for this long.
CLAIM = timedelta(minutes=5)


# --- endpoints -----------------------------------------------------------------------------------------
def webhook_url_check(url: str) -> None:
    reason = transport.url_refusal(url)
    if reason:
        raise ProblemError(p.WEBHOOK_URL_REFUSED, f"Webhook URL refused: {reason}.", extra={"url": url})


def endpoint_create(*, organization_id: int, url: str, description: str = "") -> WebhookEndpoint:
    """A new endpoint with a new signing secret (the caller shows ``endpoint.secret`` once)."""
    webhook_url_check(url)
    endpoint = WebhookEndpoint(organization_id=organization_id, url=url, description=description)
    endpoint.secret = signing.secret_new()  # stored encrypted (WebhookEndpoint.secret)
    endpoint.save()
    return endpoint


def endpoint_for_url(*, organization_id: int, url: str) -> tuple[WebhookEndpoint, bool]:
    """The organization's endpoint for ``url`` (oldest), or a new one: (endpoint, created)."""
    existing = WebhookEndpoint.objects.filter(organization_id=organization_id, url=url).order_by("pk").first()
    if existing is not None:
        return existing, False
    return endpoint_create(organization_id=organization_id, url=url), True


def endpoint_update(*, endpoint: WebhookEndpoint, url: str | None = None, description: str | None = None):
    if url is not None:
        webhook_url_check(url)
        endpoint.url = url
    if description is not None:
        endpoint.description = description
    endpoint.save(update_fields=["url", "description"])
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret at once: deliveries signed from now on use it (shown once to the caller)."""
    endpoint.secret = signing.secret_new()
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save(update_fields=["secret_encrypted", "secret_rotated_at"])
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    try:
        endpoint.delete()
    except ProtectedError:
        raise ProblemError(p.WEBHOOK_ENDPOINT_IN_USE) from None


@dataclass
class ReencryptProgress:
    """Where ``endpoint_secrets_reencrypt`` is: endpoints seen of ``total``, how many were
    re-encrypted, already under the newest key, or not decryptable (their ids)."""

    total: int
    seen: int = 0
    reencrypted: int = 0
    current: int = 0
    failed: list[int] = field(default_factory=list)


def endpoint_secrets_reencrypt(
    *, batch_size: int = 500, progress: Callable[[ReencryptProgress], None] | None = None
) -> ReencryptProgress:
    """Re-encrypt every stored signing secret under the newest key of ALERTS_SECRET_KEYS (after a
    key rotation; docs/alerts.md). The secrets themselves do not change. Each row is written only
    if it still holds the token read (a secret rotated meanwhile is under the newest key already),
    so it runs safely beside the API. ``progress`` is called after every batch."""
    state = ReencryptProgress(total=WebhookEndpoint.objects.count())
    last_pk = 0
    while True:
        rows = list(
            WebhookEndpoint.objects.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", "secret_encrypted")[:batch_size]
        )
        if not rows:
            return state
        for pk, token in rows:
            state.seen += 1
            if encryption.is_current(token):
                state.current += 1
                continue
            try:
                new_token = encryption.reencrypt(token)
            except encryption.SecretNotDecryptable:
                state.failed.append(pk)
                continue
            unchanged = WebhookEndpoint.objects.filter(pk=pk, secret_encrypted=token)  # compare and set
            if unchanged.update(secret_encrypted=new_token):
                state.reencrypted += 1
            else:
                state.current += 1  # rotated (under the newest key) or deleted meanwhile
        last_pk = rows[-1][0]
        if progress is not None:
            progress(state)


# --- alerts --------------------------------------------------------------------------------------------
@transaction.atomic
def alert_create(
    *,
    organization_id: int,
    endpoint: WebhookEndpoint,
    coin_id: int,
    condition: dict[str, Any],
    name: str = "",
    cooldown_seconds: int = 0,
) -> Alert:
    """A new active alert. Its first evaluation only records which side of the level the value is on
    (alerts fire on a crossing, never on creation)."""
    # Serialise creations of one organization so the limit holds under concurrent requests.
    WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
    if Alert.objects.filter(organization_id=organization_id).count() >= settings.ALERTS_MAX_PER_ORGANIZATION:
        raise ProblemError(p.ALERT_LIMIT_REACHED)
    return Alert.objects.create(
        organization_id=organization_id,
        endpoint=endpoint,
        coin_id=coin_id,
        name=name,
        cooldown_seconds=cooldown_seconds,
        **_condition_fields(condition),
    )


@transaction.atomic
def alert_create_for_webhook(
    *,
    organization_id: int,
    coin_id: int,
    condition: dict[str, Any],
    endpoint: WebhookEndpoint | None = None,
    webhook_url: str | None = None,
    name: str = "",
    cooldown_seconds: int = 0,
) -> tuple[Alert, str | None]:
    """A new alert delivered to ``endpoint`` or, for ``webhook_url``, to the organization's endpoint
    for that URL (created if new). Returns (alert, the new endpoint's secret: shown once; None when an
    existing endpoint is used). The management API and the portal both create alerts through this."""
    secret = None
    if endpoint is None:
        if webhook_url is None:
            raise ValueError("an endpoint or a webhook URL")
        endpoint, created = endpoint_for_url(organization_id=organization_id, url=webhook_url)
        secret = endpoint.secret if created else None
    alert = alert_create(
        organization_id=organization_id,
        endpoint=endpoint,
        coin_id=coin_id,
        condition=condition,
        name=name,
        cooldown_seconds=cooldown_seconds,
    )
    return alert, secret


def _condition_fields(condition: dict[str, Any]) -> dict[str, Any]:
    kind = condition["type"]
    level = conditions.FIXED_LEVEL.get(condition.get("indicator", ""), condition.get("level"))
    return {
        "kind": kind,
        "direction": condition["direction"],
        "level": level,
        "window": condition.get("window", "") if kind == "change" else "",
        "indicator": condition.get("indicator", "") if kind == "indicator" else "",
        "timeframe": condition.get("timeframe", "") if kind == "indicator" else "",
    }


def alert_update(
    *,
    alert: Alert,
    condition: dict[str, Any] | None = None,
    endpoint: WebhookEndpoint | None = None,
    name: str | None = None,
    cooldown_seconds: int | None = None,
    active: bool | None = None,
) -> Alert:
    """Change an alert. A new condition (or reactivation) starts from a fresh state: the next value
    only sets the side again."""
    if condition is not None:
        for key, value in _condition_fields(condition).items():
            setattr(alert, key, value)
        alert.last_side, alert.last_value = "", None
    if endpoint is not None:
        alert.endpoint = endpoint
    if name is not None:
        alert.name = name
    if cooldown_seconds is not None:
        alert.cooldown_seconds = cooldown_seconds
    if active is not None:
        if active and not alert.active:
            alert.last_side, alert.last_value = "", None
        alert.active = active
    alert.updated_at = timezone.now()
    alert.save()
    return alert


def alert_delete(*, alert: Alert) -> None:
    alert.delete()  # its deliveries stay (alert set to null): the history is the customer's


# --- deliveries: record ---------------------------------------------------------------------------------
def _event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _body(event_id: str, event_type: str, created: datetime, data: dict[str, Any]) -> str:
    event = {
        "id": event_id,
        "type": event_type,
        "api_version": API_VERSION,
        "created": created.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return orjson.dumps(event).decode()  # compact; values are finite (no NaN reaches an event)


def alert_event_data(*, alert: Any, coin: str, value: float, previous_side: str, price: float | None,
                     at: datetime, name: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "alert": {
            "id": alert.id,
            "name": name,
            "coin": coin,
            "condition": conditions.condition_of(alert),
            "cooldown_seconds": alert.cooldown_seconds,
        },
        "value": value,
        "previous_side": previous_side,
        "side": alert.direction,
        "price": price,
        "at": at.isoformat().replace("+00:00", "Z"),
    }


def deliveries_create_for_firings(
    *, firings: Iterable[Firing], now: datetime, enqueue: bool = True
) -> list[int]:
    """Record one delivery per firing (one INSERT) and, with ``enqueue``, queue their first attempts
    after commit (:func:`deliveries_enqueue`; the caller does it otherwise). Returns their ids."""
    firings = list(firings)
    if not firings:
        return []
    coins = coin_upstream_ids(coin_ids=sorted({f.alert.coin_id for f in firings}))
    columns: dict[str, list[Any]] = {name: [] for name, _type in _DELIVERY_COLUMNS}
    claim_until = now + CLAIM  # handed to the broker after commit; the dispatcher's safety net
    for f in firings:
        event_id = _event_id()
        data = alert_event_data(
            alert=f.alert,
            coin=coins.get(f.alert.coin_id, ""),
            value=f.value,
            previous_side=f.previous_side,
            price=f.price,
            at=now,
            name=f.alert.name,
        )
        for name, value in (
            ("organization_id", f.alert.organization_id),
            ("endpoint_id", f.alert.endpoint_id),
            ("alert_id", f.alert.id),
            ("event_id", event_id),
            ("event_type", "alert.triggered"),
            ("body", _body(event_id, "alert.triggered", now, data)),
            ("status", Delivery.Status.PENDING.value),
            ("attempts", 0),
            ("created_at", now),
            ("next_attempt_at", claim_until),
        ):
            columns[name].append(value)
    ids = _deliveries_insert(columns)
    if enqueue:
        transaction.on_commit(lambda: deliveries_enqueue([(pk, 1) for pk in ids]))
    return ids


_DELIVERY_COLUMNS = (
    ("organization_id", "int8"),
    ("endpoint_id", "int8"),
    ("alert_id", "int8"),
    ("event_id", "text"),
    ("event_type", "text"),
    ("body", "text"),
    ("status", "text"),
    ("attempts", "int4"),
    ("created_at", "timestamptz"),
    ("next_attempt_at", "timestamptz"),
)


def _deliveries_insert(columns: dict[str, list[Any]]) -> list[int]:
    """One INSERT of many deliveries from typed arrays, sent in binary (an ORM bulk_create of 6,000
    JSON bodies spends seconds quoting them as text arrays); returns their ids."""
    names = ", ".join(name for name, _type in _DELIVERY_COLUMNS)
    arrays = ", ".join(f"%b::{type_}[]" for _name, type_ in _DELIVERY_COLUMNS)  # %b: binary parameters
    sql = f"INSERT INTO alerts_delivery ({names}) SELECT * FROM unnest({arrays}) RETURNING id"  # noqa: S608
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:  # server-side binding (Django's is client-side)
        cur.execute(sql, [columns[name] for name, _type in _DELIVERY_COLUMNS])
        return [row[0] for row in cur.fetchall()]


#: Deliveries per ``alerts.deliver_batch`` message sent by evaluation and the dispatcher (the worker
#: splits it into chunks of ``DELIVER_CHUNK``, one endpoint's deliveries together).
ENQUEUE_MAX = 2000
DELIVER_CHUNK = 20
#: A chunk stops starting attempts after this many seconds and queues the rest as a new chunk (one
#: attempt lasts at most ALERTS_WEBHOOK_TIMEOUT, so the task stays within its soft time limit).
CHUNK_BUDGET_SECONDS = 25.0


def deliveries_enqueue(pairs: list[tuple[int, int]]) -> None:
    """Queue attempts ``(delivery id, attempt number)``: one ``alerts.deliver_batch`` message per
    ``ENQUEUE_MAX`` deliveries (a storm of 6,000 firings is 3 broker round trips, not 6,000)."""
    from marketdata.alerts.tasks import deliver_batch

    for start in range(0, len(pairs), ENQUEUE_MAX):
        part = [list(pair) for pair in pairs[start : start + ENQUEUE_MAX]]
        try:
            deliver_batch.apply_async(kwargs={"deliveries": part})
        except Exception:  # the broker is down: the dispatcher sends them once their claim expires
            logger.warning(
                "%d deliveries not queued; the dispatcher will send them", len(part), exc_info=True
            )


def deliveries_chunk(*, pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Split queued attempts into chunks of at most ``DELIVER_CHUNK``, ordered by endpoint so each
    endpoint's deliveries sit together (a slow receiver holds up its own chunks, not everyone's).
    Deliveries that no longer exist are left out. One query."""
    rows = Delivery.objects.filter(pk__in=[pk for pk, _ in pairs]).values_list("id", "endpoint_id")
    endpoint_of = dict(rows)
    ordered = sorted((p for p in pairs if p[0] in endpoint_of), key=lambda p: (endpoint_of[p[0]], p[0]))
    return [ordered[i : i + DELIVER_CHUNK] for i in range(0, len(ordered), DELIVER_CHUNK)]


# --- deliveries: attempts -------------------------------------------------------------------------------
def retry_delay(failures: int) -> timedelta:
    """Wait after the ``failures``-th failed attempt: base * 2^(failures-1), capped."""
    seconds = settings.ALERTS_WEBHOOK_RETRY_BASE * (2 ** max(0, failures - 1))
    return timedelta(seconds=min(seconds, settings.ALERTS_WEBHOOK_RETRY_MAX))


def retry_schedule() -> list[timedelta]:
    """Offsets from the first attempt of every attempt a delivery gets (docs/alerts.md)."""
    window = timedelta(seconds=settings.ALERTS_WEBHOOK_RETRY_WINDOW)
    out, at, failures = [timedelta(0)], timedelta(0), 0
    while True:
        failures += 1
        at += retry_delay(failures)
        if at > window:
            if out[-1] < window:
                out.append(window)
            return out
        out.append(at)


def _headers(delivery: Delivery, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Candlestack-Webhooks/1.0",
        signing.HEADER: signing.signature_header(secret=secret, body=body),
        "Candlestack-Event-Id": delivery.event_id,
        "Candlestack-Event-Type": delivery.event_type,
        "Candlestack-Delivery-Id": str(delivery.pk),
    }


@dataclass
class AttemptOutcome:
    delivery: Delivery | None
    attempted: bool
    gave_up: bool = False  # this attempt was the last: the delivery is dead now


def delivery_attempt(
    *, delivery_id: int, attempt: int | None = None, manual: bool = False, now: datetime | None = None
) -> AttemptOutcome:
    """Make attempt number ``attempt`` of a delivery (or, ``manual``, one more attempt whatever its
    state: a replay), record it, and schedule the next one or give up.

    Idempotent: a scheduled attempt whose number was made already (a duplicate message) does
    nothing; the row lock makes concurrent workers skip a delivery being sent."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return AttemptOutcome(None, attempted=False)
        if not manual and (
            delivery.status not in (Delivery.Status.PENDING, Delivery.Status.RETRYING)
            or (attempt is not None and attempt != delivery.attempts + 1)
        ):
            return AttemptOutcome(delivery, attempted=False)
        body = delivery.body.encode()
        started = timezone.now()
        result = transport.post(
            delivery.endpoint.url, body=body, headers=_headers(delivery, body, delivery.endpoint.secret)
        )
        now = now or timezone.now()
        delivery.attempts += 1
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            success=result.success,
            error=result.error[:500],
            response_excerpt=result.excerpt[:500],
            manual=manual,
        )
        delivery.last_attempt_at = now
        gave_up = False
        if result.success:
            delivery.status = Delivery.Status.SUCCEEDED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        elif delivery.event_type == "webhook.test":
            delivery.status = Delivery.Status.FAILED
            delivery.next_attempt_at = None
        elif manual:  # a replay that failed: the delivery keeps its state (a dead one stays dead)
            gave_up = delivery.status == Delivery.Status.DEAD
        else:
            window_end = delivery.created_at + timedelta(seconds=settings.ALERTS_WEBHOOK_RETRY_WINDOW)
            next_at = now + retry_delay(delivery.attempts)
            if now >= window_end:
                delivery.status = Delivery.Status.DEAD
                delivery.next_attempt_at = None
                gave_up = True
            else:
                delivery.status = Delivery.Status.RETRYING
                delivery.next_attempt_at = min(next_at, window_end)
        delivery.save()
    logger.info(
        "delivery %s attempt %d: %s in %d ms%s",
        delivery.pk,
        delivery.attempts,
        result.status_code or result.error,
        result.duration_ms,
        " (gave up)" if gave_up else "",
    )
    return AttemptOutcome(delivery, attempted=True, gave_up=gave_up)


def deliveries_attempt_chunk(
    *, pairs: list[tuple[int, int]], budget_seconds: float | None = None
) -> tuple[list[AttemptOutcome], list[tuple[int, int]]]:
    """Make the queued attempts of one chunk in turn (each :func:`delivery_attempt`: recorded,
    idempotent per attempt number). Stops starting new ones after ``budget_seconds``: returns
    (outcomes, the attempts left for a new chunk)."""
    budget = CHUNK_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    began = time.monotonic()
    outcomes: list[AttemptOutcome] = []
    for index, (pk, number) in enumerate(pairs):
        if time.monotonic() - began >= budget:
            return outcomes, list(pairs[index:])
        outcomes.append(delivery_attempt(delivery_id=pk, attempt=number))
    return outcomes, []


def deliveries_dispatch_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Hand the deliveries whose next attempt is due to the broker (claimed for ``CLAIM``)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING], next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("id", "attempts")[:limit]
        )
        if not due:
            return 0
        Delivery.objects.filter(pk__in=[pk for pk, _ in due]).update(next_attempt_at=now + CLAIM)
        pairs = [(pk, attempts + 1) for pk, attempts in due]
        transaction.on_commit(lambda: deliveries_enqueue(pairs))
    return len(due)


# --- replay and test ----------------------------------------------------------------------------------
def delivery_replay(*, delivery: Delivery) -> Delivery:
    """Send a delivery once more now (same event id and body, a fresh signature): one manual attempt,
    made by a worker. A dead delivery's pending dead letter is resolved (the customer replayed it)."""
    if delivery.status == Delivery.Status.PENDING:
        raise ProblemError(p.DELIVERY_NOT_REPLAYABLE)
    letters = DeadLetter.objects.filter(
        task_name=DELIVER_TASK, kwargs__delivery_id=delivery.pk, status=DeadLetter.Status.PENDING
    ).values_list("pk", flat=True)
    for letter_id in list(letters):
        dead_letter_resolve(dead_letter_id=letter_id, note="replayed by the customer (delivery replay)")
    from marketdata.alerts.tasks import deliver

    pk = delivery.pk
    transaction.on_commit(lambda: deliver.apply_async(kwargs={"delivery_id": pk, "manual": True}))
    return delivery


def delivery_send_test(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> Delivery:
    """A ``webhook.test`` event to ``endpoint``, recorded, then sent at once (one attempt, no retries)."""
    now = now or timezone.now()
    event_id = _event_id()
    data = {"endpoint": {"id": endpoint.pk, "url": endpoint.url}, "message": "A test event from Candlestack."}
    try:
        delivery = Delivery.objects.create(
            organization_id=endpoint.organization_id,
            endpoint=endpoint,
            event_id=event_id,
            event_type="webhook.test",
            body=_body(event_id, "webhook.test", now, data),
            created_at=now,
            next_attempt_at=None,
        )
    except IntegrityError:  # an event id collision (2^-96): try once more with a new one
        return delivery_send_test(endpoint=endpoint, now=now)
    outcome = delivery_attempt(delivery_id=delivery.pk, manual=True)
    return outcome.delivery or delivery


def deliveries_prune(*, older_than: timedelta, now: datetime | None = None) -> int:
    now = now or timezone.now()
    done = [Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.DEAD]
    deleted, _ = Delivery.objects.filter(created_at__lt=now - older_than, status__in=done).delete()
    return deleted
