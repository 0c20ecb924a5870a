"""The gate: rate limits, monthly quota and plan gating in ONE atomic Redis call (a Lua GCRA script).

The gateway (``apiplatform.gateway.PublicAPIView``) calls :func:`admit` once per request.

Why not django-ratelimit or DRF throttles here (see docs/plans-and-limits.md):

* DRF throttles read a list, decide in Python and write it back: two processes read the same
  state and both admit — they over-admit under concurrency.
* django-ratelimit counts with an atomic INCR, but in fixed windows: 60/min admits 60 at 00:59 and
  60 more at 01:00 — 120 within two seconds — and it cannot combine the key limit, the
  organization limit and the quota into one all-or-nothing decision (a request refused by the
  tenant limit would still have used up the key's window).
* The plan promises "``burst`` requests at once, then ``rate_per_minute`` per minute, sustained".
  That is exactly a token bucket, computed here as GCRA (one timestamp per bucket, the
  "theoretical arrival time"). The script checks the endpoint against the plan, the monthly
  credits, the organization bucket and the key bucket, and only when all pass writes all three.
  Redis runs a script atomically, so the decision is exact across any number of web processes.

The plan's limits live in Redis under the organization (``billing.plan_cache.publish_plan``,
written by ``billing.services`` whenever a plan or an assignment changes), so the script needs
no database and a plan change is seen by the very next request in every process. The keys are
those of ``billing.redis_layout``.

Time is Redis's own clock (``TIME`` inside the script): one clock for every web process and
machine, so unsynchronised host clocks, or a thread delayed between reading its clock and
reaching Redis, cannot skew the buckets. Tests inject a clock instead (``clock_override`` or the
``now`` argument), which the script then uses.

Redis unreachable: :func:`admit` fails open with a per-process limiter (:class:`LocalLimiter`)
and the plan last seen (or read from the database); the gateway connection's breaker
(``apiplatform.redis_access``) keeps it from trying Redis again during its back-off.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import TypedDict

import redis
from django.conf import settings

from apiplatform import redis_access
from billing import selectors, services
from billing.limits import (
    ADMITTED,
    ENDPOINT_NOT_IN_PLAN,
    MINUTE_US,
    RATE_LIMITED,
    GateResult,
    PlanLimits,
    ceil_seconds,
    month_bounds,
)
from billing.redis_layout import (
    FAILURES_KEPT,
    FAILURES_TTL_S,
    REFUSALS,
    failure_context,
    failures_key,
    key_bucket_key,
    month_key,
    plan_key,
    tenant_bucket_key,
    usage_bucket,
    usage_live_key,
)

_GATE_LUA = """
-- KEYS[1] plan hash of the organization, KEYS[2] organization bucket (TAT), KEYS[3] key bucket,
-- KEYS[4] credits used this month, KEYS[5] live usage hash, KEYS[6] the organization's failed calls
-- (list).  ARGV[1] now (us; "" = Redis TIME), ARGV[2] credit cost, ARGV[3] endpoint ("" = not gated),
-- ARGV[4] TTL of the month counter (s), ARGV[5] usage bucket ("" = do not meter), ARGV[6] the failed
-- call's "<key id>|<request id>|<path>" ("" = do not keep refusals).
local p = redis.call('HMGET', KEYS[1], 'v', 'rpm', 'burst', 'krpm', 'quota', 'name', 'eps', 'tfs', 'ov', 'bw',
  'dn', 'cs')
if not p[1] then return '-1' end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local ep = ARGV[3]
local burst = tonumber(p[3])
local quota = tonumber(p[5])
local s = redis.call('MGET', KEYS[4], KEYS[2], KEYS[3])
local used = tonumber(s[1] or '0')

local t_T = 60000000 / tonumber(p[2])
local k_T = 60000000 / tonumber(p[4])
local t_tat = tonumber(s[2] or '0')
if t_tat < now then t_tat = now end
local k_tat = tonumber(s[3] or '0')
if k_tat < now then k_tat = now end

local status = 0
local retry = 0
if ep ~= '' and p[7] ~= '*' and not string.find(',' .. p[7] .. ',', ',' .. ep .. ',', 1, true) then
  status = 3
elseif used + cost > quota and p[9] ~= '1' then  -- 'ov' = '1': past the quota is billed overage
  status = 2
else
  -- GCRA: admitting moves TAT forward by one emission interval T; refuse if the new TAT would be
  -- more than burst*T ahead of now.
  local t_allow = t_tat + t_T - burst * t_T
  local k_allow = k_tat + k_T - burst * k_T
  if t_allow > now or k_allow > now then
    status = 1
    retry = math.max(t_allow, k_allow) - now
  else
    t_tat = t_tat + t_T
    k_tat = k_tat + k_T
    redis.call('SET', KEYS[2], string.format('%.0f', t_tat), 'PX', math.ceil((t_tat - now) / 1000) + 1000)
    redis.call('SET', KEYS[3], string.format('%.0f', k_tat), 'PX', math.ceil((k_tat - now) / 1000) + 1000)
    if cost > 0 then
      used = redis.call('INCRBY', KEYS[4], cost)
      if used == cost then redis.call('EXPIRE', KEYS[4], tonumber(ARGV[4])) end
    end
  end
end
-- metering of the outcome decided here (ARGV[5] = bucket "<hour>|<org>|<key>|<endpoint>"): an
-- admitted request is counted as 2xx with its credits, a refused one as 4xx with its reason
-- ("4xx:rate-limited" ...); the gateway corrects the rare admitted request that does not end in
-- 2xx (billing.metering.correct).
local refusal = REFUSALS[status]
if ARGV[5] ~= '' then
  if status == 0 then
    redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|2xx|n', 1)
    if cost > 0 then redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|2xx|c', cost) end
  else
    redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|4xx:' .. refusal .. '|n', 1)
  end
end
-- a refusal is one of the organization's failed calls (billing.redis_layout.failure_entry)
if status ~= 0 and ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[6], string.format('%.0f|%d|%s|%s', now, REFUSAL_STATUS[status], refusal, ARGV[6]))
  redis.call('LTRIM', KEYS[6], 0, FAILURES_KEPT - 1)
  redis.call('EXPIRE', KEYS[6], FAILURES_TTL)
end
-- one flat string, cheap to parse: the decision and bucket state, then the plan ("tail", the same
-- for every request of the organization until its plan changes: the client caches it by value)
return string.format('%d|%d|%d|%d|%d|%d|%d|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', status,
  math.floor((now + burst * t_T - t_tat) / t_T), math.ceil(t_tat - now),
  math.floor((now + burst * k_T - k_tat) / k_T), math.ceil(k_tat - now), used, math.ceil(retry),
  p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8] or '', p[9] or '0', p[10] or '', p[12] or '0', p[11] or '')
"""
# The constants the script needs, from the one place that defines them (billing.redis_layout).
_GATE_LUA = (
    f"local REFUSALS = {{'{REFUSALS[0]}', '{REFUSALS[1]}', '{REFUSALS[2]}'}}\n"
    "local REFUSAL_STATUS = {429, 429, 403}\n"
    f"local FAILURES_KEPT = {FAILURES_KEPT}\n"
    f"local FAILURES_TTL = {FAILURES_TTL_S}\n"
) + _GATE_LUA
_GATE_SHA = hashlib.sha1(_GATE_LUA.encode(), usedforsecurity=False).hexdigest()

_redis = redis_access.connection("gateway")  # URL, timeout, decoded replies and the breaker
_breaker = _redis.breaker

clock_override = None  # tests: a callable returning µs; used by the script instead of Redis TIME


def now_us() -> int:
    """This process's clock (µs): month and metering hour, fallback limiter (tests: overridden)."""
    if clock_override is not None:
        return clock_override()
    return time.time_ns() // 1000


# --- the gate call on this thread's own connection -------------------------------------------------
class _Line(threading.local):
    """This thread's own connection for the gate call (see :func:`_evalsha`)."""

    conn: redis.Connection | None = None
    url: str = ""
    pid: int = 0
    busy: bool = False  # a reply is (or may be) still unread: never reuse the connection then
    served: bool = False  # the connection has answered before (so it may have gone stale idle)


_line = _Line()


def thread_connection() -> redis.Connection:
    """This thread's connection for the gate call (a new one for a new process, a changed
    ``GATEWAY_REDIS_URL``, or after a call that did not read its reply)."""
    line = _line
    url = _redis.url
    pid = os.getpid()
    if line.conn is None or line.url != url or line.pid != pid or line.busy:
        if line.conn is not None and line.pid == pid:
            line.conn.disconnect()
        pool = _redis.client().connection_pool  # same URL, timeouts and parser as the pool's
        line.conn, line.url, line.pid = pool.connection_class(**pool.connection_kwargs), url, pid
        line.busy = line.served = False
    return line.conn


def _evalsha(keys: list[str], args: list) -> str:
    """EVALSHA of the gate script on this thread's own connection.

    The request path's one round trip, so it skips the pool: redis-py's checkout (lock, a
    poll() for stray data, metrics hooks) costs more CPU than the round trip itself
    (bench/bench_gateway.py). The same guarantee is kept by ``busy``: a call that did not read
    its reply (timeout, an exception in between) leaves the connection to be replaced.
    A connection the server closed while idle (Redis restarted) is reconnected once."""
    for attempt in (0, 1):
        conn = thread_connection()
        line = _line
        line.busy = True
        try:
            conn.send_packed_command(
                conn.pack_command("EVALSHA", _GATE_SHA, len(keys), *keys, *args), check_health=False
            )
            reply = conn.read_response()
        except redis.exceptions.NoScriptError:  # Redis restarted or SCRIPT FLUSH: load it, run again
            conn.send_command("SCRIPT", "LOAD", _GATE_LUA)
            conn.read_response()
            continue
        except redis.ConnectionError:
            conn.disconnect()
            if attempt or not line.served:
                raise
            line.served = False
            continue
        line.busy = False
        line.served = True
        return reply
    raise redis.ConnectionError("gate script could not be run")


_plans: dict[str, PlanLimits] = {}  # the plan part of gate replies -> its (shared) PlanLimits


def _plan_of(tail: str) -> PlanLimits:
    plan = _plans.get(tail)
    if plan is None:
        version, rpm, burst, krpm, quota, name, eps, tfs, ov, bw, cs, dn = tail.split("|", 11)
        plan = PlanLimits(
            name=name, display_name=dn or name, version=int(version), rate_per_minute=int(rpm),
            burst=int(burst), key_rate_per_minute=int(krpm), monthly_credits=int(quota),
            endpoints=eps, timeframes=tfs, overage=ov == "1", billing_warning=bw,
            concurrent_streams=int(cs or 0),
        )  # fmt: skip
        if len(_plans) >= 10_000:
            _plans.clear()
        _plans[tail] = plan
    return plan


def _parse(raw: str, month: str, month_reset_s: int, bucket: str = "") -> GateResult:
    status_s, t_rem_s, t_reset, k_rem_s, k_reset, used, retry, tail = raw.split("|", 7)
    status = int(status_s)
    t_rem, k_rem = int(t_rem_s), int(k_rem_s)
    return GateResult(
        status=status,
        plan=_plan_of(tail),
        tenant_remaining=max(0, t_rem),
        tenant_reset_s=ceil_seconds(int(t_reset)),
        key_remaining=max(0, k_rem),
        key_reset_s=ceil_seconds(int(k_reset)),
        credits_used=int(used),
        retry_after_s=ceil_seconds(int(retry)) if status == RATE_LIMITED else 0,
        month_reset_s=month_reset_s,
        month=month,
        metered_bucket=bucket,
    )


def check(
    *,
    organization_id: int,
    key_id: str,
    endpoint: str,
    cost: int,
    now: int | None = None,
    meter_endpoint: str | None = None,
    request_id: str = "",
    path: str = "",
) -> GateResult | None:
    """One atomic check-and-consume (and, with ``meter_endpoint``, the metering of its outcome; with
    ``path``, a refusal is kept among the organization's failed calls, in the same call).

    ``None`` means Redis has no plan for the organization yet (the caller publishes it and calls
    again). Raises ``redis_access.BackendDown`` while the gateway connection backs off, and when
    the call fails (the failure is recorded by the breaker)."""
    if now is None and clock_override is not None:
        now = clock_override()
    script_now = "" if now is None else now  # "": the script reads Redis TIME
    now = now_us() if now is None else now
    month, month_reset_s = month_bounds(now)
    bucket = (
        usage_bucket(now=now, organization_id=organization_id, key_id=key_id, endpoint=meter_endpoint)
        if meter_endpoint
        else ""
    )
    if not _breaker.available():
        raise redis_access.BackendDown("Redis (gateway) backing off")
    keys = [
        plan_key(organization_id),
        tenant_bucket_key(organization_id),
        key_bucket_key(key_id),
        month_key(organization_id, month),
        usage_live_key(),  # the flush renames this very key (billing.metering)
        failures_key(organization_id),
    ]
    failure = failure_context(key_id=key_id, request_id=request_id, path=path) if path else ""
    try:
        raw = _evalsha(keys, [script_now, cost, endpoint, month_reset_s + 86_400, bucket, failure])
    except redis_access.ERRORS as exc:
        _breaker.failed(exc)
        raise redis_access.BackendDown(str(exc)) from exc
    if _breaker.down:
        _breaker.succeeded()
    if raw == "-1":
        return None
    return _parse(raw, month, month_reset_s, bucket)


# --- the gateway's one call ------------------------------------------------------------------------
_fallback_plans: dict[int, tuple[PlanLimits, float]] = {}  # organization -> (plan, valid until)


def _remember_plan(organization_id: int, plan: PlanLimits) -> None:
    cached = _fallback_plans.get(organization_id)
    now = time.monotonic()
    if cached is not None and cached[0] is plan and cached[1] - now > settings.GATEWAY_LOCAL_PLAN_TTL / 2:
        return  # the same plan, remembered recently enough
    if len(_fallback_plans) > 50_000 and organization_id not in _fallback_plans:
        _fallback_plans.clear()
    _fallback_plans[organization_id] = (plan, now + settings.GATEWAY_LOCAL_PLAN_TTL)


def _fallback_plan(organization_id: int) -> PlanLimits:
    cached = _fallback_plans.get(organization_id)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    plan = selectors.organization_plan_limits(organization_id=organization_id)
    _remember_plan(organization_id, plan)
    return plan


class _CheckArgs(TypedDict):
    """The keyword arguments :func:`admit` passes to :func:`check` (twice on the cold path)."""

    organization_id: int
    key_id: str
    endpoint: str
    cost: int
    meter_endpoint: str
    request_id: str
    path: str


def admit(
    *,
    organization_id: int,
    key_id: str,
    endpoint: str,
    cost: int,
    meter_endpoint: str,
    request_id: str = "",
    path: str = "",
) -> GateResult:
    """Check and consume the limits of one request and meter its outcome; never raises for Redis.
    With ``path`` (and ``request_id``) a refusal is also kept among the organization's last failed
    calls, inside the same call (``billing.redis_layout.failure_entry``).

    Warm path: one Redis round trip (:func:`check`), no SQL. Cold path (Redis has no copy of the
    organization's plan): ``billing.services.organization_plan_load``, then the check again.
    Redis unreachable: the per-process :class:`LocalLimiter` with the plan last seen here (or read
    from the database), ``degraded=True``."""
    now = now_us()
    result = None
    args: _CheckArgs = {
        "organization_id": organization_id,
        "key_id": key_id,
        "endpoint": endpoint,
        "cost": cost,
        "meter_endpoint": meter_endpoint,
        "request_id": request_id,
        "path": path,
    }  # no "now": the script uses Redis's clock (tests: clock_override)
    if _breaker.available():
        try:
            result = check(**args)
            if result is None:  # cold: Redis does not know the organization's plan yet
                services.organization_plan_load(organization_id=organization_id, now_us=now)
                result = check(**args)
        except redis_access.BackendDown:  # recorded by check()
            result = None
        except redis_access.ERRORS as exc:  # from the cold path
            _breaker.failed(exc)
            result = None
    if result is None:
        plan = _fallback_plan(organization_id)
        return local_limiter.gate(
            organization_id=organization_id, key_id=key_id, plan=plan, endpoint=endpoint, now=now
        )
    _remember_plan(organization_id, result.plan)
    return result


# --- fallback while Redis is unreachable: the same GCRA, per process --------------------------------
class LocalLimiter:
    """Per-process GCRA used only while Redis is unreachable (fail open, but not unlimited).

    Each process enforces the plan's limits on its own, so N processes admit up to N times the plan;
    the monthly quota is not enforced (its counter is in Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

    def clear(self) -> None:
        with self._lock:
            self._tat.clear()

    def _take(self, key: str, now: int, rpm: int, burst: int) -> tuple[bool, float, float]:
        T = MINUTE_US / rpm
        tat = max(self._tat.get(key, 0.0), now)
        allow_at = tat + T - burst * T
        if allow_at > now:
            return False, tat, allow_at - now
        return True, tat + T, 0.0

    def gate(
        self, *, organization_id: int, key_id: str, plan: PlanLimits, endpoint: str, now: int
    ) -> GateResult:
        month, month_reset_s = month_bounds(now)
        tk, kk = f"o{organization_id}", f"k{key_id}"
        with self._lock:
            if len(self._tat) > 100_000:
                self._tat.clear()
            status, retry = ADMITTED, 0.0
            t_tat = max(self._tat.get(tk, 0.0), now)
            k_tat = max(self._tat.get(kk, 0.0), now)
            if not plan.includes_endpoint(endpoint):
                status = ENDPOINT_NOT_IN_PLAN
            else:
                t_ok, t_new, t_wait = self._take(tk, now, plan.rate_per_minute, plan.burst)
                k_ok, k_new, k_wait = self._take(kk, now, plan.key_rate_per_minute, plan.burst)
                if t_ok and k_ok:
                    self._tat[tk], self._tat[kk] = t_tat, k_tat = t_new, k_new
                else:
                    status, retry = RATE_LIMITED, max(t_wait, k_wait)
        t_T, k_T = MINUTE_US / plan.rate_per_minute, MINUTE_US / plan.key_rate_per_minute
        return GateResult(
            status=status,
            plan=plan,
            tenant_remaining=max(0, int((now + plan.burst * t_T - t_tat) // t_T)),
            tenant_reset_s=ceil_seconds(int(t_tat - now)),
            key_remaining=max(0, int((now + plan.burst * k_T - k_tat) // k_T)),
            key_reset_s=ceil_seconds(int(k_tat - now)),
            credits_used=0,
            retry_after_s=ceil_seconds(int(retry)) if status == RATE_LIMITED else 0,
            month_reset_s=month_reset_s,
            month=month,
            degraded=True,
        )


local_limiter = LocalLimiter()


def reset() -> None:
    """Forget this process's gate state (tests, benchmarks: as in a freshly started process): this
    thread's connection, the gateway connection's client and back-off, the plans last seen and the
    fallback limiter."""
    line = _line
    if line.conn is not None and line.pid == os.getpid():
        line.conn.disconnect()
    line.conn = None
    line.url = ""
    _redis.reset()
    _fallback_plans.clear()
    local_limiter.clear()
