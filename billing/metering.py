"""Usage metering: counted in Redis on the request path, flushed to PostgreSQL exactly once.

Request path. Counts live in one Redis hash (keys and field format: ``billing.redis_layout``) ::

    "<hour>|<org>|<key>|<endpoint>|<class>|n"   requests
    "<hour>|<org>|<key>|<endpoint>|<class>|c"   credits

The gate script (``billing.gate``) adds every request it decides on, in the same call: admitted
as 2xx with its credits, refused as ``4xx:<refusal>`` (``rate-limited``, ``quota-exceeded``,
``plan-upgrade-required``: ``UsageRecord.refusal`` keeps why, exactly). ``correct`` moves an
admitted request that ended otherwise, or costing fewer credits than it reserved (one more round
trip: one script that also gives the difference back to the month's quota);
``record`` counts requests that never reached the gate (401s, Redis fallback). Counts are signed:
a correction may reach PostgreSQL in a later batch than the request it corrects.

Failed calls. Each organization's last ``FAILURES_KEPT`` failed calls (time, status, problem, key
id, request id, path) are kept in a capped Redis list (``gw:failures:<org>``), written only by calls
the failure path makes anyway: the gate script for its refusals, ``correct`` for an admitted
request that ended in 4xx/5xx, ``record`` for a key-authenticated request refused before the gate
(scope, IP allow-list). A successful call writes nothing there and makes no extra round trip.

Flush (``usage_flush``; Celery task ``billing.flush_usage`` and ``manage.py flush_usage``):

1. A Lua script atomically RENAMEs the live hash to ``batch:<id>`` and adds ``<id>`` to the
   ``pending`` set. Requests arriving afterwards create a fresh live hash: nothing is lost.
2. For every pending batch (including ones left by a flush that was killed): read the hash, and in
   ONE PostgreSQL transaction insert the batch id into ``UsageFlushBatch`` and add the counts to
   ``UsageRecord`` (upsert, ``requests = requests + excluded.requests``). If the batch id is
   already there the batch was applied before, and nothing is added.
3. Delete the batch hash and remove the id from ``pending``.

A kill between 1 and 2 leaves the batch pending (re-applied next time); a kill inside 2 rolls the
transaction back (re-applied next time); a kill between 2 and 3 leaves a batch whose id is
recorded (skipped, then deleted next time). No request is lost or counted twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organization
from apiplatform import redis_access
from billing.models import UsageFlushBatch
from billing.redis_layout import (
    FAILURES_KEPT,
    FAILURES_TTL_S,
    REFUSALS,
    failure_entry,
    failures_key,
    month_key,
    parse_failure_entry,
    parse_usage_counter,
    refusal_class,
    split_usage_field,
    usage_batch_key,
    usage_bucket,
    usage_counter,
    usage_flushed_key,
    usage_live_key,
    usage_pending_key,
)

logger = logging.getLogger(__name__)

_ROTATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

_UPSERT_SQL = """
INSERT INTO billing_usagerecord
    (hour, organization_id, key_id, endpoint, status_class, refusal, requests, credits, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT ON CONSTRAINT billing_usage_bucket_unique DO UPDATE SET
    requests = billing_usagerecord.requests + EXCLUDED.requests,
    credits = billing_usagerecord.credits + EXCLUDED.credits,
    updated_at = EXCLUDED.updated_at
"""

_BATCH_SQL = """
INSERT INTO billing_usageflushbatch (batch_id, applied_at, buckets, requests, credits, quarantined)
VALUES (%s, %s, %s, %s, %s, '[]')
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id
"""


_redis = redis_access.connection("gateway")  # the gate's connection: its keys, its back-off


def status_class(status: int) -> str:
    """The status class a response is counted in: ``2xx`` ... ``5xx`` (1xx counts as 2xx)."""
    return f"{min(5, max(2, status // 100))}xx"


@dataclass(frozen=True, slots=True)
class Hit:
    """One answered request, as metering sees it."""

    organization_id: int | None
    key_id: str
    endpoint: str
    status: int
    credits: int  # credits charged (0 when not charged)
    now_us: int = 0
    refusal: str = ""  # refused by the gate (its per-process fallback): rate-limited, quota-exceeded...
    # kept among the organization's failed calls when it failed (status >= 400) and ``path`` is set
    problem: str = ""  # the problem type's slug of the answer
    request_id: str = ""
    path: str = ""


# A failed call, kept in the organization's capped list (KEYS[n] the list, ARGV[m] the entry, "" = none)
_KEEP_FAILURE_LUA = f"""
local function keep_failure(list, entry)
  if entry == '' then return end
  redis.call('LPUSH', list, entry)
  redis.call('LTRIM', list, 0, {FAILURES_KEPT - 1})
  redis.call('EXPIRE', list, {FAILURES_TTL_S})
end
"""

_METER_LUA = (
    _KEEP_FAILURE_LUA
    + """
-- KEYS[1] live usage hash, KEYS[2] the organization's failed calls; ARGV[1] counter, ARGV[2] credits,
-- ARGV[3] the failed call's entry ("" = none)
redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|n', 1)
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|c', ARGV[2]) end
keep_failure(KEYS[2], ARGV[3])
return 1
"""
)


def refusal_of(gate_status: int) -> str:
    """The refusal a gate status stands for ("" for an admitted request)."""
    return REFUSALS[gate_status - 1] if 1 <= gate_status <= len(REFUSALS) else ""


def refusal_counted_as(gate_status: int) -> str:
    """The usage class the gate script counted a refused request in (``4xx:<refusal>``)."""
    return refusal_class(refusal_of(gate_status))


def failed_call_entry(
    *,
    organization_id: int | None,
    key_id: str,
    status: int,
    problem: str,
    request_id: str,
    path: str,
    now_us: int,
) -> str:
    """The entry a failed call leaves in its organization's list ("" when there is nothing to keep:
    not a failure, no organization, or no path)."""
    if status < 400 or not organization_id or not path:
        return ""
    return failure_entry(
        at_us=now_us, status=status, problem=problem, key_id=key_id, request_id=request_id, path=path
    )


def record(hit: Hit) -> None:
    """Count one request that the gate did not meter (no organization, Redis fallback, refused
    before the gate), and keep it among the organization's failed calls if it failed: one Redis round
    trip; straight into PostgreSQL if Redis is unreachable (the failed call is then not kept)."""
    bucket = usage_bucket(
        now=hit.now_us, organization_id=hit.organization_id, key_id=hit.key_id, endpoint=hit.endpoint
    )
    counter = usage_counter(bucket, refusal_class(hit.refusal) if hit.refusal else status_class(hit.status))
    entry = failed_call_entry(
        organization_id=hit.organization_id, key_id=hit.key_id, status=hit.status, problem=hit.problem,
        request_id=hit.request_id, path=hit.path, now_us=hit.now_us,
    )  # fmt: skip
    live = usage_live_key()
    failures = failures_key(hit.organization_id) if entry and hit.organization_id else live
    try:
        with _redis.breaker.guard():
            r = _redis.client()
            redis_access.script(_METER_LUA, r)(
                keys=[live, failures],
                args=[counter, hit.credits, entry],
                client=r,
            )
    except redis_access.ERRORS:  # backing off, or the failure the breaker just recorded
        _record_direct({counter: [1, hit.credits]})


_CORRECT_LUA = (
    _KEEP_FAILURE_LUA
    + """
-- KEYS[1] live usage hash, KEYS[2] the organization's credits used this month, KEYS[3] its failed
-- calls.  ARGV[1] bucket, ARGV[2] class counted, ARGV[3] real class, ARGV[4] credits counted,
-- ARGV[5] credits it really costs, ARGV[6] credits to give back to the month's quota, ARGV[7] the
-- failed call's entry ("" = none).
keep_failure(KEYS[3], ARGV[7])
local from = ARGV[1] .. '|' .. ARGV[2]
local to = ARGV[1] .. '|' .. ARGV[3]
if from ~= to then
  redis.call('HINCRBY', KEYS[1], from .. '|n', -1)
  redis.call('HINCRBY', KEYS[1], to .. '|n', 1)
end
if ARGV[4] ~= '0' then redis.call('HINCRBY', KEYS[1], from .. '|c', -tonumber(ARGV[4])) end
if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[1], to .. '|c', ARGV[5]) end
local refund = tonumber(ARGV[6])
-- a vanished counter (Redis lost it; it is re-seeded from PostgreSQL) is never driven negative
if refund > 0 and redis.call('EXISTS', KEYS[2]) == 1 then return redis.call('DECRBY', KEYS[2], refund) end
return -1
"""
)


def correct(
    *,
    bucket: str,
    from_class: str,
    to_class: str,
    credits_from: int,
    credits_to: int,
    refund: int = 0,
    organization_id: int | None = None,
    month: str = "",
    failure: str = "",
) -> int | None:
    """The gate counted a request as ``from_class`` with ``credits_from`` credits; it ended as
    ``to_class`` costing ``credits_to`` (an error, a 304, or fewer rows than reserved for). Moves
    the count and the credits, and gives ``refund`` reserved credits back to the organization's
    month, in ONE atomic script (one round trip), which also keeps ``failure`` (an entry of
    :func:`failed_call_entry`) among the organization's failed calls. Returns the month's credits
    used after the refund (``None`` when nothing was given back or Redis failed).

    Redis unreachable: the usage correction goes straight into PostgreSQL (nothing lost for
    billing); the refund to the month's counter in Redis cannot be made then (documented)."""
    month_counter = month_key(organization_id, month) if refund and organization_id else ""
    try:
        with _redis.breaker.guard():
            r = _redis.client()
            used = redis_access.script(_CORRECT_LUA, r)(
                keys=[
                    usage_live_key(),
                    month_counter or usage_live_key(),
                    failures_key(organization_id) if failure and organization_id else usage_live_key(),
                ],
                args=[
                    bucket,
                    from_class,
                    to_class,
                    credits_from,
                    credits_to,
                    refund if month_counter else 0,
                    failure if organization_id else "",
                ],
                client=r,
            )
    except redis_access.ERRORS:  # backing off, or the failure the breaker just recorded
        _record_direct(
            {
                usage_counter(bucket, from_class): [-1, -credits_from],
                usage_counter(bucket, to_class): [1, credits_to],
            }
        )
        return None
    used = int(used)
    return used if used >= 0 else None


def _record_direct(rows: dict[str, list[int]]) -> None:
    """Fallback while Redis is down: add to PostgreSQL at once (durable)."""
    try:
        with transaction.atomic():
            _upsert(rows)
    except Exception:
        logger.exception("usage could not be recorded (Redis and PostgreSQL failed): %s", rows)


def _aggregate(data: dict[str, str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for field, value in data.items():
        counter, kind = split_usage_field(field)
        rows[counter][0 if kind == "n" else 1] += int(value)
    return rows


def _upsert(rows: dict[str, list[int]]) -> list[dict]:
    """Add the batch's counters to UsageRecord; returns the quarantined ones (unknown organization),
    which are left out so that one unattributable counter never blocks the rest of the batch."""
    now = timezone.now()
    params = []
    for counter, (requests, credit_count) in rows.items():
        if not requests and not credit_count:
            continue  # a request counted and moved to another class within the same batch
        hour, org, key_id, endpoint, cls, refusal = parse_usage_counter(counter)
        params.append(
            (
                datetime.fromtimestamp(hour, tz=UTC),
                org,
                key_id,
                endpoint,
                cls,
                refusal,
                requests,
                credit_count,
                now,
            )
        )
    org_ids = {p[1] for p in params if p[1] is not None}
    known = set(Organization.objects.filter(pk__in=org_ids).values_list("pk", flat=True))
    quarantined = [
        {"hour": p[0].isoformat(), "organization_id": p[1], "key_id": p[2], "endpoint": p[3],
         "status_class": p[4], "refusal": p[5], "requests": p[6], "credits": p[7]}
        for p in params
        if p[1] is not None and p[1] not in known
    ]  # fmt: skip
    params = [p for p in params if p[1] is None or p[1] in known]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(_UPSERT_SQL, params)
    return quarantined


# A batch id only matters while its batch could still be pending in Redis (minutes); the rows are
# kept this long as an audit trail of the flushes.
BATCH_ID_RETENTION_DAYS = 90


def _checkpoint(name: str) -> None:
    """Called between the steps of a flush; tests replace it to simulate a kill at that point."""


@dataclass
class FlushResult:
    batches: int = 0
    applied: int = 0
    skipped: int = 0
    requests: int = 0
    credits: int = 0


def usage_flush(*, progress=None) -> FlushResult:
    """Move everything counted so far from Redis into ``UsageRecord``; see the module docstring."""
    r = _redis.client()
    # the gateway connection decodes replies (decode_responses=True): str, where redis-py says bytes | str
    pending = sorted(cast("set[str]", r.smembers(usage_pending_key())))
    rotated_at = time.time_ns()  # everything in the live hash after the rotation arrived after this
    batch_id = f"{rotated_at}-{uuid.uuid4().hex[:12]}"
    rotated = r.eval(
        _ROTATE_LUA, 3, usage_live_key(), usage_batch_key(batch_id), usage_pending_key(), batch_id
    )
    if rotated:
        pending.append(batch_id)
    _checkpoint("after_rotate")
    result = FlushResult(batches=len(pending))
    for bid in pending:
        data = cast("dict[str, str]", r.hgetall(usage_batch_key(bid)))
        rows = _aggregate(data)
        requests = sum(v[0] for v in rows.values())
        credit_total = sum(v[1] for v in rows.values())
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_BATCH_SQL, [bid, timezone.now(), len(rows), requests, credit_total])
                first_time = cursor.fetchone() is not None
            if first_time:
                quarantined = _upsert(rows)
                if quarantined:
                    q_requests = sum(q["requests"] for q in quarantined)
                    q_credits = sum(q["credits"] for q in quarantined)
                    requests -= q_requests
                    credit_total -= q_credits
                    UsageFlushBatch.objects.filter(batch_id=bid).update(
                        quarantined=quarantined, requests=requests, credits=credit_total
                    )
                    logger.error(
                        "usage batch %s: %d counters (%d requests, %d credits) of unknown organizations "
                        "quarantined in billing_usageflushbatch.quarantined",
                        bid, len(quarantined), q_requests, q_credits,
                    )  # fmt: skip
            _checkpoint("before_commit")
        _checkpoint("after_commit")
        pipe = r.pipeline(transaction=True)
        pipe.delete(usage_batch_key(bid))
        pipe.srem(usage_pending_key(), bid)
        pipe.execute()
        if first_time:
            result.applied += 1
            result.requests += requests
            result.credits += credit_total
        else:
            result.skipped += 1
            logger.warning("usage batch %s was already applied; deleted it", bid)
        if progress is not None:
            progress(1)
    now = timezone.now()
    r.set(usage_flushed_key(), str(rotated_at))  # the flush lag is measured from here (usage_flush_lag)
    if now.minute == 0:  # about once an hour with the minutely schedule: forget old batch ids
        cutoff = now - timedelta(days=BATCH_ID_RETENTION_DAYS)
        UsageFlushBatch.objects.filter(applied_at__lt=cutoff).delete()
    if result.applied or result.skipped:
        logger.info(
            "usage flush: %d batch(es) applied, %d skipped, %d requests, %d credits",
            result.applied,
            result.skipped,
            result.requests,
            result.credits,
        )
    return result


@dataclass
class FlushLag:
    waiting: bool  # usage counted in Redis and not yet in PostgreSQL
    pending_batches: int  # batches rotated out of the live hash and not applied (a flush died)
    last_flush_at: datetime | None  # when the last finished flush emptied the live hash (None: never)
    lag: timedelta | None  # how long the oldest waiting usage may have waited; 0 when nothing waits
    live_counters: int = 0  # usage counters counted since the last rotation (not yet in a batch)


def _from_ns(stamp: str) -> datetime:
    return datetime.fromtimestamp(int(stamp) / 1e9, tz=UTC)


def usage_flush_lag(*, now: datetime | None = None) -> FlushLag:
    """How far the usage flush is behind (``manage.py doctor``, ``GET /metrics``; one pipelined Redis
    round trip, 1 query when Redis has no flush stamp).

    Everything in the live hash arrived after the last finished flush emptied it, and a pending batch was
    rotated at the time its id carries: the lag is ``now`` minus the oldest of these (0 when nothing
    waits). Usage waiting with no flush ever recorded has an unknown lag (None). Raises Redis errors.
    """
    now = now or timezone.now()
    r = _redis.client()
    pipe = r.pipeline(transaction=False)
    pipe.hlen(usage_live_key())
    pipe.smembers(usage_pending_key())
    pipe.get(usage_flushed_key())
    live_fields, pending, stamp = pipe.execute()
    pending = cast("set[str]", pending)
    last_flush_at = _from_ns(stamp) if stamp else None
    if last_flush_at is None:  # Redis lost its stamp: the newest applied batch is an upper bound
        last_flush_at = (
            UsageFlushBatch.objects.order_by("-applied_at").values_list("applied_at", flat=True).first()
        )
    starts = [_from_ns(bid.split("-", 1)[0]) for bid in pending]
    if live_fields and last_flush_at is not None:
        starts.append(last_flush_at)
    waiting = bool(live_fields or pending)
    if not waiting:
        lag: timedelta | None = timedelta(0)
    elif live_fields and last_flush_at is None:
        lag = None
    else:
        lag = max(now - min(starts), timedelta(0))
    return FlushLag(waiting, len(pending), last_flush_at, lag, int(live_fields) // 2)


# --- the organization's last failed calls -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FailedCall:
    at: datetime
    status: int
    problem: str  # the problem type's slug ("rate-limited", "not-found", ...; "" when unknown)
    key_id: str  # the API key's public id
    request_id: str
    path: str  # with its query string, cut to billing.redis_layout.FAILURE_PATH_MAX characters


def failed_calls_recent(*, organization_id: int, limit: int = FAILURES_KEPT) -> list[FailedCall]:
    """The organization's last failed calls, newest first (1 Redis round trip). Raises Redis errors."""
    raw = cast("list[str]", _redis.client().lrange(failures_key(organization_id), 0, max(0, limit - 1)))
    out = []
    for entry in raw:
        try:
            at_us, status, problem, key_id, request_id, path = parse_failure_entry(entry)
        except ValueError:  # not an entry of this format: skipped, never an error page
            continue
        at = datetime.fromtimestamp(at_us / 1e6, tz=UTC)
        out.append(FailedCall(at, status, problem, key_id, request_id, path))
    return out
