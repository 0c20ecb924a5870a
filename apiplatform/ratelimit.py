"""Rate limits, monthly quota and plan gating in ONE atomic Redis call (a Lua GCRA script).

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

The plan's limits live in Redis under the organization (``publish_plan``; written by
``billing.services`` whenever a plan or an assignment changes), so the script needs no database
and a plan change is seen by the very next request in every process.

Time is Redis's own clock (``TIME`` inside the script): one clock for every web process and
machine, so unsynchronised host clocks, or a thread delayed between reading its clock and
reaching Redis, cannot skew the buckets. Tests inject a clock instead (``clock_override`` or the
``now`` argument), which the script then uses.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings

from apiplatform import redis_access

logger = logging.getLogger(__name__)

US = 1_000_000
MINUTE_US = 60 * US
MONTH_POLICY_WINDOW = 2_592_000  # seconds (30 days), the "w" advertised for the monthly policy

ADMITTED = 0
RATE_LIMITED = 1
QUOTA_EXCEEDED = 2
ENDPOINT_NOT_IN_PLAN = 3
PLAN_UNKNOWN = -1

_GATE_LUA = """
-- KEYS[1] plan hash of the organization, KEYS[2] organization bucket (TAT), KEYS[3] key bucket,
-- KEYS[4] credits used this month, KEYS[5] live usage hash.  ARGV[1] now (us; "" = Redis TIME),
-- ARGV[2] credit cost, ARGV[3] endpoint ("" = not gated), ARGV[4] TTL of the month counter (s),
-- ARGV[5] usage bucket ("" = do not meter).
local p = redis.call('HMGET', KEYS[1], 'v', 'rpm', 'burst', 'krpm', 'quota', 'name', 'eps', 'tfs', 'dn')
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
elseif used + cost > quota then
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
-- admitted request is counted as 2xx with its credits, a refused one as 4xx; the gateway corrects
-- the rare admitted request that does not end in 2xx (billing.metering.correct).
if ARGV[5] ~= '' then
  if status == 0 then
    redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|2xx|n', 1)
    if cost > 0 then redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|2xx|c', cost) end
  else
    redis.call('HINCRBY', KEYS[5], ARGV[5] .. '|4xx|n', 1)
  end
end
-- one flat string, cheap to parse: the decision and bucket state, then the plan ("tail", the same
-- for every request of the organization until its plan changes: the client caches it by value)
return string.format('%d|%d|%d|%d|%d|%d|%d|%s|%s|%s|%s|%s|%s|%s|%s|%s', status,
  math.floor((now + burst * t_T - t_tat) / t_T), math.ceil(t_tat - now),
  math.floor((now + burst * k_T - k_tat) / k_T), math.ceil(k_tat - now), used, math.ceil(retry),
  p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8] or '', p[9] or '')
"""

_PUBLISH_LUA = """
-- KEYS[1] plan hash; ARGV[1] version, ARGV[2] TTL (s), then field/value pairs. Older versions
-- never overwrite newer. The TTL bounds how long a copy could stay stale if a republish was lost
-- (Redis down at the time): the next request after it expires reloads from the database.
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


@dataclass(frozen=True, slots=True)
class PlanLimits:
    name: str
    display_name: str
    version: int
    rate_per_minute: int
    burst: int
    key_rate_per_minute: int
    monthly_credits: int
    endpoints: str  # comma-separated endpoint names or "*"
    timeframes: str  # comma-separated timeframes or "*"

    def includes_endpoint(self, endpoint: str) -> bool:
        return not endpoint or self.endpoints == "*" or endpoint in self.endpoints.split(",")

    def includes_timeframe(self, timeframe: str) -> bool:
        return self.timeframes == "*" or timeframe in self.timeframes.split(",")

    def as_redis_fields(self) -> list[str]:
        return [
            "name", self.name, "dn", self.display_name, "rpm", str(self.rate_per_minute),
            "burst", str(self.burst), "krpm", str(self.key_rate_per_minute),
            "quota", str(self.monthly_credits), "eps", self.endpoints, "tfs", self.timeframes,
        ]  # fmt: skip


@dataclass(slots=True)
class GateResult:
    status: int
    plan: PlanLimits
    tenant_remaining: int
    tenant_reset_s: int
    key_remaining: int
    key_reset_s: int
    credits_used: int
    retry_after_s: int
    month_reset_s: int
    month: str
    degraded: bool = False  # decided by the per-process fallback (Redis unreachable)
    metered_bucket: str = ""  # usage bucket, when the gate call also metered the request (gate())

    @property
    def credits_remaining(self) -> int:
        return max(0, self.plan.monthly_credits - self.credits_used)


class RedisUnavailable(Exception):
    pass


clock_override = None  # tests: a callable returning µs; used by the script instead of Redis TIME


def now_us() -> int:
    """This process's clock (µs): month and metering hour, fallback limiter (tests: overridden)."""
    if clock_override is not None:
        return clock_override()
    return time.time_ns() // 1000


_month_span: tuple[int, int, str] = (0, 0, "")  # (first µs, first µs of the next month, YYYYMM)


def month_bounds(now: int) -> tuple[str, int]:
    """(``YYYYMM`` of the UTC calendar month containing ``now``, seconds until the next month)."""
    global _month_span
    start, end, month = _month_span
    if not start <= now < end:  # once a month per process (or when a test moves the clock)
        dt = datetime.fromtimestamp(now / US, tz=UTC)
        first = datetime(dt.year, dt.month, 1, tzinfo=UTC)
        nxt = datetime(dt.year + (dt.month == 12), dt.month % 12 + 1, 1, tzinfo=UTC)
        start, end, month = (
            int(first.timestamp()) * US,
            int(nxt.timestamp()) * US,
            f"{dt.year:04d}{dt.month:02d}",
        )
        _month_span = (start, end, month)
    return month, max(1, -(-(end - now) // US))


# --- keys ------------------------------------------------------------------------------------------
def _k(*parts: object) -> str:
    return redis_access.key("gw", *parts)


def plan_key(organization_id: int) -> str:
    return _k("plan", organization_id)


def tenant_bucket_key(organization_id: int) -> str:
    return _k("rl", "org", organization_id)


def key_bucket_key(key_id: str) -> str:
    return _k("rl", "key", key_id)


def month_key(organization_id: int, month: str) -> str:
    return _k("credits", organization_id, month)


# --- the Redis client (one pool per process, short timeouts, back-off after a failure) -------------
class _GateLine(threading.local):
    """This thread's own connection for the gate call (see ``_Client.gate``)."""

    conn: redis.Connection | None = None
    owner: redis.Redis | None = None
    pid: int = 0
    busy: bool = False  # a reply is (or may be) still unread: never reuse the connection then
    served: bool = False  # the connection has answered before (so it may have gone stale idle)


class _Client:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._url: str | None = None
        self._line = _GateLine()
        self.down_until = 0.0
        self.gate_script = None
        self.publish_script = None

    def get(self) -> redis.Redis:
        url = settings.GATEWAY_REDIS_URL
        if self._redis is None or self._url != url:
            with self._lock:
                if self._redis is None or self._url != url:
                    timeout = settings.GATEWAY_REDIS_TIMEOUT
                    self._redis = redis.Redis.from_url(
                        url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
                    )
                    self.gate_script = self._redis.register_script(_GATE_LUA)
                    self.publish_script = self._redis.register_script(_PUBLISH_LUA)
                    self._url = url
                    self.down_until = 0.0
        return self._redis

    def _gate_connection(self) -> redis.Connection:
        line = self._line
        r = self.get()
        pid = os.getpid()
        if line.conn is None or line.owner is not r or line.pid != pid or line.busy:
            if line.conn is not None and line.pid == pid:
                line.conn.disconnect()
            pool = r.connection_pool  # same URL, timeouts and parser as the pool's connections
            line.conn, line.owner, line.pid = pool.connection_class(**pool.connection_kwargs), r, pid
            line.busy = line.served = False
        return line.conn

    def gate(self, keys: list[str], args: list) -> str:
        """EVALSHA of the gate script on this thread's own connection.

        The request path's one round trip, so it skips the pool: redis-py's checkout (lock, a
        poll() for stray data, metrics hooks) costs more CPU than the round trip itself
        (bench/bench_gateway.py). The same guarantee is kept by ``busy``: a call that did not read
        its reply (timeout, an exception in between) leaves the connection to be replaced.
        A connection the server closed while idle (Redis restarted) is reconnected once."""
        for attempt in (0, 1):
            conn = self._gate_connection()
            line = self._line
            line.busy = True
            try:
                conn.send_packed_command(
                    conn.pack_command("EVALSHA", self.gate_script.sha, len(keys), *keys, *args),
                    check_health=False,
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

    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    def mark_down(self, exc: Exception) -> None:
        if self.available():
            logger.error("gateway Redis unreachable (%s); using the per-process fallback", exc)
        self.down_until = time.monotonic() + settings.GATEWAY_REDIS_RETRY_SECONDS

    def reset(self) -> None:
        with self._lock:
            line = self._line
            if line.conn is not None and line.pid == os.getpid():
                line.conn.disconnect()
            line.conn = line.owner = None
            self._redis = None
            self._url = None
            self.down_until = 0.0


client = _Client()


def redis_client() -> redis.Redis:
    """The gateway's Redis connection; raises :class:`RedisUnavailable` during the back-off."""
    if not client.available():
        raise RedisUnavailable("gateway Redis marked down")
    return client.get()


def publish_plan(organization_id: int, limits: PlanLimits, *, pipeline=None) -> bool:
    """Write an organization's plan limits into Redis (ignored if a newer version is there).
    With ``pipeline`` the command is only queued (the result comes with ``pipeline.execute()``)."""
    r = client.get()
    args = [limits.version, int(settings.GATEWAY_PLAN_TTL), *limits.as_redis_fields()]
    result = client.publish_script(keys=[plan_key(organization_id)], args=args, client=pipeline or r)
    return bool(result) if pipeline is None else True


_plans: dict[str, PlanLimits] = {}  # the plan part of gate replies -> its (shared) PlanLimits


def _plan_of(tail: str) -> PlanLimits:
    plan = _plans.get(tail)
    if plan is None:
        version, rpm, burst, krpm, quota, name, eps, tfs, dn = tail.split("|", 8)
        plan = PlanLimits(
            name=name, display_name=dn or name, version=int(version), rate_per_minute=int(rpm),
            burst=int(burst), key_rate_per_minute=int(krpm), monthly_credits=int(quota),
            endpoints=eps, timeframes=tfs,
        )  # fmt: skip
        if len(_plans) >= 10_000:
            _plans.clear()
        _plans[tail] = plan
    return plan


def _parse(raw: str, month: str, month_reset_s: int, bucket: str = "") -> GateResult:
    status, t_rem, t_reset, k_rem, k_reset, used, retry, tail = raw.split("|", 7)
    status = int(status)
    t_rem, k_rem = int(t_rem), int(k_rem)
    return GateResult(
        status=status,
        plan=_plan_of(tail),
        tenant_remaining=max(0, t_rem),
        tenant_reset_s=_ceil_s(int(t_reset)),
        key_remaining=max(0, k_rem),
        key_reset_s=_ceil_s(int(k_reset)),
        credits_used=int(used),
        retry_after_s=_ceil_s(int(retry)) if status == RATE_LIMITED else 0,
        month_reset_s=month_reset_s,
        month=month,
        metered_bucket=bucket,
    )


def _ceil_s(us: int) -> int:
    return max(0, -(-us // US))


def usage_live_key() -> str:
    return _k("{usage}", "live")  # hash tag: every usage key in one cluster slot


def usage_bucket(*, now: int, organization_id: int | None, key_id: str, endpoint: str) -> str:
    """ "<hour>|<org>|<key>|<endpoint>" of the usage hash (the status class and |n / |c follow)."""
    hour = (now // US) // 3600 * 3600
    return f"{hour}|{organization_id or 0}|{key_id}|{endpoint}"


def gate(
    *,
    organization_id: int,
    key_id: str,
    endpoint: str,
    cost: int,
    now: int | None = None,
    meter_endpoint: str | None = None,
) -> GateResult | None:
    """One atomic check-and-consume (and, with ``meter_endpoint``, the metering of its outcome).

    ``None`` means Redis has no plan for the organization yet (the caller publishes it and calls
    again). Raises :class:`RedisUnavailable`."""
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
    if not client.available():
        raise RedisUnavailable("gateway Redis marked down")
    keys = [
        plan_key(organization_id),
        tenant_bucket_key(organization_id),
        key_bucket_key(key_id),
        month_key(organization_id, month),
        usage_live_key(),  # the flush renames this very key (billing.metering)
    ]
    try:
        raw = client.gate(keys, [script_now, cost, endpoint, month_reset_s + 86_400, bucket])
    except redis.RedisError as exc:
        client.mark_down(exc)
        raise RedisUnavailable(str(exc)) from exc
    if raw == "-1":
        return None
    return _parse(raw, month, month_reset_s, bucket)


# --- fallback while Redis is unreachable: the same GCRA, per process --------------------------------
class LocalLimiter:
    """Per-process GCRA used only while Redis is unreachable (fail open, but not unlimited).

    Each process enforces the plan's limits on its own, so N processes admit up to N times the plan;
    the monthly quota is not enforced (its counter is in Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}

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
            tenant_reset_s=_ceil_s(int(t_tat - now)),
            key_remaining=max(0, int((now + plan.burst * k_T - k_tat) // k_T)),
            key_reset_s=_ceil_s(int(k_tat - now)),
            credits_used=0,
            retry_after_s=_ceil_s(int(retry)) if status == RATE_LIMITED else 0,
            month_reset_s=month_reset_s,
            month=month,
            degraded=True,
        )


local_limiter = LocalLimiter()
