"""The API gateway: the base class of every public /v1/ data endpoint.

Every public endpoint subclasses :class:`PublicAPIView` and declares, next to the view:
``endpoint_name`` (the name used for rate limits, plan gating and metering) and ``credit_cost``
(credits one call costs; override ``get_credit_cost(request)`` for a cost that depends on the
request, e.g. the number of candles asked for: the gate reserves that maximum, and a view that
returns fewer rows declares its real cost with :func:`charge`, e.g.
``charge(request, page_credits(rows))``). Views stay thin and know little of the gateway:

1. API-key authentication and scope check (accounts; DRF authentication + permission classes).
2. ``initial()``: ONE Redis call (``billing.gate.admit``: a Lua script) checks the
   endpoint against the organization's plan, the monthly credits, the organization's and the
   key's token buckets, and consumes all of them or none — and meters the outcome it decided
   (admitted: 2xx with its credits; refused: 4xx with the refusal, also kept among the
   organization's last failed calls). Refusals: 403 ``plan-upgrade-required``,
   429 ``quota-exceeded``, 429 ``rate-limited`` (with ``Retry-After``).
3. The view runs. A view that serves plan-dependent variants calls
   ``self.require_timeframe(request, tf)`` (no extra round trip: the plan came back from step 2).
4. ``finalize_response()``: only if the answer is not what the gate counted (an admitted request
   ending in 3xx/4xx/5xx, or costing less than it reserved: fewer rows declared with
   :func:`charge`, a 304, an error) does one more Redis call move the count and give the
   difference back to the month's quota, atomically (``billing.metering.correct``; a 4xx/5xx is
   kept among the organization's last failed calls in the same call); then the
   ``RateLimit-Policy`` / ``RateLimit`` headers are added (the month countdown after the refund).
   Requests that never reached the gate (401, scope 403, 429 ``auth-rate-limited``) are metered
   with one call (``billing.metering.record``).

Warm path (a successful call costing what it reserved): 1 Redis round trip, 0 SQL queries.
Redis unreachable: fail open with a per-process limiter and metering straight into PostgreSQL
(docs/plans-and-limits.md).

Billing owns the plans, limits, quota and metering; this module only calls its public functions
(``billing.gate``, ``billing.limits``, ``billing.metering``).
"""

from __future__ import annotations

import functools
import logging

from django.conf import settings
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication
from accounts.permissions import HasMarketDataRead
from apiplatform import problems, telemetry
from apiplatform.context import current_request_id, organization_known
from apiplatform.problems import ProblemError
from apiplatform.schema import ProblemAutoSchema, problem_response
from billing import gate, limits, metering
from billing.limits import GateResult, PlanLimits

logger = logging.getLogger(__name__)

QUOTA_EXCEEDED = problems.register(
    "quota-exceeded",
    429,
    "Monthly quota exhausted",
    "The organization has used all the credits of its plan for this calendar month (UTC). "
    "`Retry-After` says when the quota renews; `upgrade_url` leads to a bigger plan.",
)
PLAN_UPGRADE_REQUIRED = problems.register(
    "plan-upgrade-required",
    403,
    "Not included in your plan",
    "This endpoint or option is not part of the organization's plan; `upgrade_url` leads to a plan "
    "that includes it.",
)


_HEADER_DOCS = {
    "RateLimit-Policy": (
        "The limits that apply (IETF draft-ietf-httpapi-ratelimit-headers): `minute` is the "
        "organization's sustained requests per minute (all its keys together), `key-minute` the "
        "limit of this API key, `month` the monthly credits. Example: "
        '`"minute";q=60;w=60, "key-minute";q=60;w=60, "month";q=10000;w=2592000`.'
    ),
    "RateLimit": (
        "Where the caller stands: `r` requests (or credits, for `month`) remaining now, `t` seconds "
        'until fully replenished (for `month`: until the quota renews). Example: `"minute";r=41;t=17, '
        '"key-minute";r=41;t=17, "month";r=9877;t=1209600`. Absent only when the request could not be '
        "attributed to an organization (401, 429 `auth-rate-limited`)."
    ),
}


class GatewayAutoSchema(ProblemAutoSchema):
    """Documents the gateway's headers on every response, its 403/429 problems, and each
    operation's credit cost (``x-credit-cost``; ``x-credit-cost-varies`` when the view computes it
    per request) and metering name (``x-endpoint-name``)."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        view = self.view
        if operation is not None and getattr(view, "gateway", False):
            operation["x-endpoint-name"] = view.endpoint_name
            operation["x-credit-cost"] = view.credit_cost
            if type(view).get_credit_cost is not PublicAPIView.get_credit_cost:
                operation["x-credit-cost-varies"] = True
        return operation

    def _get_response_headers_for_code(self, status_code, direction="response"):
        headers = super()._get_response_headers_for_code(status_code, direction)
        if str(status_code) == "401":
            return headers
        for name, description in _HEADER_DOCS.items():
            headers.setdefault(name, {"schema": {"type": "string"}, "description": description})
        if str(status_code) == "429":
            headers.setdefault(
                "Retry-After",
                {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."},
            )
        return headers

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        view = self.view
        if getattr(view, "gateway", True):
            problem = {"application/problem+json": None}
            extra = {
                "429": "Rate limit (`rate-limited`) or monthly quota (`quota-exceeded`) exceeded, or too "
                "many failed authentications from the client IP (`auth-rate-limited`).",
            }
            # 403s of the key itself (accounts): scope, IP allow-list, browser keys' origins.
            extra["403"] = (
                "The key lacks a scope (`api-key-insufficient-scope`), the request comes from an address "
                "or origin the key does not allow (`api-key-ip-not-allowed`, `origin-not-allowed`), or a "
                "secret key is used from a browser (`secret-key-in-browser`)."
            )
            if getattr(view, "plan_gated", True):
                extra["403"] += " Not included in the plan (`plan-upgrade-required`)."
            for code, description in extra.items():
                if code not in bodies:
                    bodies[code] = self._get_response_for_code(
                        problem_response(description), code, problem, direction
                    )
        return bodies


# --- what a request really costs -------------------------------------------------------------------
ACTUAL_CREDITS_ATTR = "actual_credits"
ROWS_PER_CREDIT = 1000
NOT_MODIFIED_CREDITS = 0  # a 304 Not Modified revalidation costs nothing


def page_credits(rows: int, per: int = ROWS_PER_CREDIT) -> int:
    """THE formula of row-priced endpoints: 1 credit per started ``per`` rows returned, at least 1
    (an empty page costs 1)."""
    return max(1, -(-rows // per))


def charge(request, amount: int) -> None:
    """Declare what this request actually costs, once the view knows (e.g. ``page_credits(rows)``
    of the rows it returns). The gate reserved ``get_credit_cost(request)`` (the maximum) before
    the view ran; the difference is given back after it, in the same metering call that corrects
    the usage counters, and the ``RateLimit`` month countdown of this very answer already shows it.
    A declared cost above the reservation is capped at the reservation; a view that declares
    nothing costs its reservation (no extra round trip). Errors and 304s cost nothing whatever is
    declared."""
    setattr(request, ACTUAL_CREDITS_ATTR, amount)


def upgrade_url() -> str:
    return settings.BILLING_UPGRADE_URL


@functools.lru_cache(maxsize=1024)
def _policy_header(plan: PlanLimits) -> str:
    return (
        f'"minute";q={plan.rate_per_minute};w=60, "key-minute";q={plan.key_rate_per_minute};w=60, '
        f'"month";q={plan.monthly_credits};w={limits.MONTH_POLICY_WINDOW}'
    )


def rate_limit_headers(result: GateResult) -> dict[str, str]:
    return {
        "RateLimit-Policy": _policy_header(result.plan),
        "RateLimit": (
            f'"minute";r={result.tenant_remaining};t={result.tenant_reset_s}, '
            f'"key-minute";r={result.key_remaining};t={result.key_reset_s}, '
            f'"month";r={result.credits_remaining};t={result.month_reset_s}'
        ),
    }


def refusal(result: GateResult, endpoint: str) -> ProblemError | None:
    plan = result.plan
    if result.status == limits.RATE_LIMITED:
        return ProblemError(
            problems.RATE_LIMITED,
            f"Rate limit of the {plan.display_name} plan exceeded; retry in {result.retry_after_s} s.",
            extra={"retry_after": result.retry_after_s, "plan": plan.name},
            headers={"Retry-After": str(max(1, result.retry_after_s))},
        )
    if result.status == limits.QUOTA_EXCEEDED:
        return ProblemError(
            QUOTA_EXCEEDED,
            f"The {plan.monthly_credits} monthly credits of the {plan.display_name} plan are used up; "
            f"the quota renews in {result.month_reset_s} s. Upgrade for more.",
            extra={"plan": plan.name, "upgrade_url": upgrade_url()},
            headers={"Retry-After": str(result.month_reset_s)},
        )
    if result.status == limits.ENDPOINT_NOT_IN_PLAN:
        return ProblemError(
            PLAN_UPGRADE_REQUIRED,
            f"The {endpoint} endpoint is not included in the {plan.display_name} plan.",
            extra={"plan": plan.name, "endpoint": endpoint, "upgrade_url": upgrade_url()},
        )
    return None


class PublicAPIView(APIView):
    """Base of every public /v1/ data endpoint: key auth, limits, quota, plan gating, metering."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasMarketDataRead]
    endpoint_name: str = ""
    credit_cost: int = 1
    plan_gated: bool = True  # False: every plan may call it (e.g. /v1/limits)
    gateway: bool = True  # False: no limits and no metering (benchmark twin only)
    schema = GatewayAutoSchema()

    gate_result: GateResult | None = None
    _reserved: int = 0  # credits consumed in Redis by the gate (0 when it fell back to the local limiter)
    _charge: int = 0  # the most this request may cost (get_credit_cost); charge() may lower it

    def get_credit_cost(self, request) -> int:
        """Credits this request costs; override for request-dependent costs (documented per view)."""
        return self.credit_cost

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, permissions
        if not (self.gateway and settings.GATEWAY_ENABLED):
            return
        principal = request.auth
        if principal is None:  # a subclass that allows anonymous calls: nothing to limit it by
            return
        organization_known(principal.organization_id)
        cost = max(0, int(self.get_credit_cost(request)))
        endpoint = self.endpoint_name if self.plan_gated else ""
        result = gate.admit(
            organization_id=principal.organization_id,
            key_id=principal.key_id,
            endpoint=endpoint,
            cost=cost,
            meter_endpoint=self.endpoint_name or type(self).__name__,
            request_id=current_request_id() or "",
            path=request.get_full_path(),  # kept (with the request id) only if the gate refuses
        )
        self.gate_result = result
        telemetry.gateway_decision(plan=result.plan.name, status=result.status, degraded=result.degraded)
        if logger.isEnabledFor(logging.DEBUG):  # LOG_LEVEL=DEBUG: every decision (off: one check)
            logger.debug(
                "gateway decision endpoint=%s plan=%s status=%s cost=%s credits_used=%s degraded=%s",
                self.endpoint_name, result.plan.name, result.status, cost, result.credits_used,
                result.degraded,
            )  # fmt: skip
        error = refusal(result, self.endpoint_name)
        if error is not None:
            raise error
        if not result.degraded:
            self._reserved = cost  # consumed in Redis; given back if the request does not succeed
        self._charge = cost

    def require_timeframe(self, request, timeframe: str) -> None:
        """Plan gating of a timeframe (e.g. 1m candles on paid plans only): 403 with upgrade link."""
        result = self.gate_result
        if result is not None and not result.plan.includes_timeframe(timeframe):
            raise ProblemError(
                PLAN_UPGRADE_REQUIRED,
                f"The {timeframe} timeframe is not included in the {result.plan.display_name} plan.",
                extra={"plan": result.plan.name, "timeframe": timeframe, "upgrade_url": upgrade_url()},
            )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if not (self.gateway and settings.GATEWAY_ENABLED):
            return response
        try:
            self._meter(request, response)
        except Exception:  # metering must never turn an answer into an error
            logger.exception("metering failed")
        result = self.gate_result
        if result is not None:
            for name, value in rate_limit_headers(result).items():
                response[name] = value
        return response

    def _cost(self, request, status: int) -> int:
        """What the answer costs: 0 for an error (≥ 400) and for ``304 Not Modified``; else the
        credits the view declared with :func:`charge` (never more than the reservation), or the
        reservation when it declared nothing."""
        if status >= 400 or status == 304:
            return NOT_MODIFIED_CREDITS if status == 304 else 0
        declared = getattr(request, ACTUAL_CREDITS_ATTR, None)
        if declared is None:
            return self._charge
        return max(0, min(self._charge, int(declared)))

    def _meter(self, request, response) -> None:
        result = self.gate_result
        status = response.status_code
        if result is not None and result.metered_bucket:
            # The gate call already counted this request: as 2xx with its reserved credits if
            # admitted, as 4xx with its refusal (kept among the failed calls) if refused. Only a
            # different outcome or cost costs a second round trip (which keeps a 4xx/5xx as failed call).
            admitted = result.status == limits.ADMITTED
            counted_as = "2xx" if admitted else metering.refusal_counted_as(result.status)
            actual = metering.status_class(status)
            if not admitted and actual == "4xx":
                actual = counted_as  # refused as counted (its reason kept)
            charged = self._reserved if admitted else 0
            keep = self._cost(request, status) if admitted else 0
            if actual == counted_as and keep == charged:
                return  # the warm path (and a refusal: the gate call counted and kept it)
            organization_id = result_org(request)
            used = metering.correct(
                bucket=result.metered_bucket,
                from_class=counted_as,
                to_class=actual,
                credits_from=charged,
                credits_to=keep,
                refund=charged - keep,
                organization_id=organization_id,
                month=result.month,
                failure=metering.failed_call_entry(
                    organization_id=organization_id,
                    key_id=getattr(getattr(request, "_auth", None), "key_id", ""),
                    status=status,
                    problem=problem_slug(response),
                    request_id=current_request_id() or "",
                    path=request.get_full_path(),
                    now_us=gate.now_us(),
                ),
            )
            if used is not None:
                result.credits_used = used  # the RateLimit month countdown after the refund
            return
        principal = getattr(request, "_auth", None)  # never re-run authentication here
        organization_id = getattr(principal, "organization_id", None)
        key_id = getattr(principal, "key_id", "") if organization_id else ""
        succeeded = status < 400 and result is not None and result.status == limits.ADMITTED
        metering.record(
            metering.Hit(
                organization_id=organization_id,
                key_id=key_id or "",
                endpoint=self.endpoint_name or type(self).__name__,
                status=status,
                credits=self._cost(request, status) if succeeded else 0,
                now_us=gate.now_us(),
                refusal=metering.refusal_of(result.status) if result is not None else "",
                problem=problem_slug(response) if status >= 400 else "",
                request_id=current_request_id() or "",
                path=request.get_full_path() if status >= 400 else "",
            )
        )


def result_org(request) -> int | None:
    return getattr(getattr(request, "_auth", None), "organization_id", None)


def problem_slug(response) -> str:
    """The problem type's slug of a problem+json answer ("" for anything else)."""
    data = getattr(response, "data", None)
    kind = data.get("type") if isinstance(data, dict) else None
    return kind.rsplit("/", 1)[-1] if isinstance(kind, str) else ""
