"""Streams (``GET /v1/stream``): how many an organization may hold open, and what they cost while open.

Concurrency. The plan's ``concurrent_streams`` (in the gateway's copy of the plan, ``gw:plan:<org>``
field ``cs``) bounds the streams open at once across every server process and machine. Each open
stream holds a *lease* in the organization's sorted set ``gw:streams:<org>`` (member: a connection
id, score: when the lease expires, Redis clock, ms). :func:`slot_acquire` drops expired leases,
counts the rest and adds one only if under the limit — in one Lua script, so two processes can
never both take the last slot. The process serving a stream renews its leases
(:func:`slots_renew`, one call for all of its streams) well before they expire and removes them
when a stream ends (:func:`slot_release`). A process that dies without releasing: its leases expire
after ``STREAM_SLOT_LEASE_SECONDS`` and the slots are free again (crash-safe).

Cost. Opening a stream is an ordinary gateway call (its credits are the stream view's
``credit_cost``); every further minute connected costs ``STREAM_CREDITS_PER_MINUTE``, charged by
:func:`minutes_charge` against the same monthly counter and metered in the same usage bucket as
the open (credits only: a minute is not a request). A plan without overage that runs out of
credits gets ``False`` back: the stream ends with a ``quota-exceeded`` event.
"""

from __future__ import annotations

from dataclasses import dataclass

from apiplatform import redis_access
from billing.limits import month_bounds
from billing.redis_layout import (
    month_key,
    plan_key,
    stream_slots_key,
    usage_bucket,
    usage_counter,
    usage_live_key,
)

_redis = redis_access.connection("gateway")

#: Returned by :func:`slot_acquire` when Redis has no copy of the plan (or one without ``cs``).
PLAN_UNKNOWN = -1

_ACQUIRE_LUA = """
-- KEYS[1] the organization's stream leases, KEYS[2] its plan hash.
-- ARGV[1] connection id, ARGV[2] lease (ms).  -> {1 taken | 0 full | -1 plan unknown, open, limit}
local cs = redis.call('HGET', KEYS[2], 'cs')
if not cs then return {-1, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
local limit = tonumber(cs)
if open >= limit then return {0, open, limit} end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return {1, open + 1, limit}
"""

_RENEW_LUA = """
-- KEYS[1] the organization's stream leases, KEYS[2] its plan hash; ARGV[1] lease (ms), ARGV[2..]
-- connection ids. Renews the leases; a lease that lapsed (the process was stalled longer than the
-- lease) is taken again if a slot is free. Returns the ids left without a slot (lost).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(redis.call('HGET', KEYS[2], 'cs') or '0')
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) or redis.call('ZCARD', KEYS[1]) < limit then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], lease) end
return lost
"""

_CHARGE_LUA = """
-- KEYS[1] plan hash, KEYS[2] credits used this month, KEYS[3] live usage hash.
-- ARGV[1] credits, ARGV[2] usage counter "<bucket>|2xx", ARGV[3] TTL of the month counter (s).
-- -> {1 charged | 0 over the quota (nothing charged), credits used}
local cost = tonumber(ARGV[1])
local p = redis.call('HMGET', KEYS[1], 'quota', 'ov')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if p[1] and p[2] ~= '1' and used + cost > tonumber(p[1]) then return {0, used} end
used = redis.call('INCRBY', KEYS[2], cost)
if used == cost then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
redis.call('HINCRBY', KEYS[3], ARGV[2] .. '|c', cost)
return {1, used}
"""


@dataclass(frozen=True, slots=True)
class SlotResult:
    status: int  # 1 taken, 0 the plan's limit is reached, PLAN_UNKNOWN
    open: int  # streams open for the organization (including this one when taken)
    limit: int  # the plan's concurrent_streams


def slot_acquire(*, organization_id: int, connection_id: str, lease_ms: int) -> SlotResult:
    """Take one of the organization's stream slots for ``connection_id`` if one is free (atomic)."""
    r = _redis.client()
    status, open_, limit = redis_access.script(_ACQUIRE_LUA, r)(
        keys=[stream_slots_key(organization_id), plan_key(organization_id)], args=[connection_id, lease_ms]
    )
    return SlotResult(int(status), int(open_), int(limit))


def slots_renew(leases: dict[int, list[str]], *, lease_ms: int) -> set[str]:
    """Renew the leases of open streams (organization -> connection ids) in one round trip. A lease
    that lapsed meanwhile is taken again when a slot is free; returns the connection ids left
    without a slot (another stream took it): they must end."""
    if not leases:
        return set()
    r = _redis.client()
    renew = redis_access.script(_RENEW_LUA, r)
    pipe = r.pipeline(transaction=False)
    for organization_id, ids in leases.items():
        renew(
            keys=[stream_slots_key(organization_id), plan_key(organization_id)],
            args=[lease_ms, *ids],
            client=pipe,
        )
    lost: set[str] = set()
    for reply in pipe.execute():
        lost.update(reply)
    return lost


def slot_release(*, organization_id: int, connection_id: str) -> None:
    _redis.client().zrem(stream_slots_key(organization_id), connection_id)


def slots_open(organization_id: int) -> int:
    """Streams the organization holds open now (unexpired leases)."""
    r = _redis.client()
    now_s, now_us = r.time()
    return int(r.zcount(stream_slots_key(organization_id), now_s * 1000 + now_us // 1000 + 1, "+inf"))


@dataclass(frozen=True, slots=True)
class MinuteCharge:
    organization_id: int
    key_id: str
    credits: int


def minutes_charge(charges: list[MinuteCharge], *, now_us: int, endpoint: str) -> list[bool]:
    """Charge streams for a minute connected (one round trip for all). Per charge: ``True`` when
    charged, ``False`` when the organization's plan has no overage and the credits would exceed its
    monthly quota (nothing charged: the stream must end)."""
    if not charges:
        return []
    month, month_reset_s = month_bounds(now_us)
    r = _redis.client()
    charge = redis_access.script(_CHARGE_LUA, r)
    pipe = r.pipeline(transaction=False)
    for c in charges:
        bucket = usage_bucket(
            now=now_us, organization_id=c.organization_id, key_id=c.key_id, endpoint=endpoint
        )
        charge(
            keys=[plan_key(c.organization_id), month_key(c.organization_id, month), usage_live_key()],
            args=[c.credits, usage_counter(bucket, "2xx"), month_reset_s + 86_400],
            client=pipe,
        )
    return [bool(int(reply[0])) for reply in pipe.execute()]
