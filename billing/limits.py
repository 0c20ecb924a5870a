"""What the gate decides with and what it answers: a plan's limits, the gate's result, time units.

* :class:`PlanLimits` — an organization's effective limits, as the gate script sees them (built
  from a :class:`billing.models.Plan` by ``billing.selectors.plan_limits``).
* :class:`GateResult` — one request's decision and where the organization and the key stand.
* The decision codes (``ADMITTED``, ``RATE_LIMITED``, ``QUOTA_EXCEEDED``, ``ENDPOINT_NOT_IN_PLAN``;
  ``PLAN_UNKNOWN`` is the script's "publish the plan first").
* Time: the gate works in microseconds (``US``); the quota runs per UTC calendar month
  (:func:`month_bounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

US = 1_000_000
MINUTE_US = 60 * US
MONTH_POLICY_WINDOW = 2_592_000  # seconds (30 days), the "w" advertised for the monthly policy

ADMITTED = 0
RATE_LIMITED = 1
QUOTA_EXCEEDED = 2
ENDPOINT_NOT_IN_PLAN = 3
PLAN_UNKNOWN = -1


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
    overage: bool = False  # past monthly_credits: keep admitting (billed as overage) instead of refusing
    # "" or "past_due:<grace end, epoch s>": a payment problem the customer should see (/v1/limits)
    billing_warning: str = ""
    concurrent_streams: int = 0  # open SSE streams (GET /v1/stream) at once, all keys together

    def includes_endpoint(self, endpoint: str) -> bool:
        return not endpoint or self.endpoints == "*" or endpoint in self.endpoints.split(",")

    def includes_timeframe(self, timeframe: str) -> bool:
        return self.timeframes == "*" or timeframe in self.timeframes.split(",")

    def as_redis_fields(self) -> list[str]:
        return [
            "name", self.name, "dn", self.display_name, "rpm", str(self.rate_per_minute),
            "burst", str(self.burst), "krpm", str(self.key_rate_per_minute),
            "quota", str(self.monthly_credits), "eps", self.endpoints, "tfs", self.timeframes,
            "ov", "1" if self.overage else "0", "bw", self.billing_warning,
            "cs", str(self.concurrent_streams),
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
    metered_bucket: str = ""  # usage bucket, when the gate call also metered the request

    @property
    def credits_remaining(self) -> int:
        return max(0, self.plan.monthly_credits - self.credits_used)


def ceil_seconds(us: int) -> int:
    """Whole seconds (rounded up, never negative) of a duration in µs."""
    return max(0, -(-us // US))


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
