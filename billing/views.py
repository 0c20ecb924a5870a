"""Billing endpoints: ``GET /v1/ping`` and ``GET /v1/limits`` (API key), ``GET /v1/account/usage`` (JWT)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from accounts import roles
from accounts.schema import problem
from accounts.tenancy import OrganizationScopedView
from apiplatform.gateway import PublicAPIView
from apiplatform.problems import SERVICE_UNAVAILABLE, VALIDATION_ERROR, ProblemError
from apiplatform.query import QuerySerializer
from apiplatform.schema import problem_response
from billing import selectors


class RateLimitWindow(serializers.Serializer):
    """One token bucket's state (documentation only; a new instance per field that uses it)."""

    limit = serializers.IntegerField(help_text="Sustained requests per minute.")
    burst = serializers.IntegerField(help_text="Requests that may be sent at once.")
    remaining = serializers.IntegerField(help_text="Requests that would be admitted right now.")
    reset_seconds = serializers.IntegerField(help_text="Seconds until `remaining` is back at `burst`.")


# The gateway's schema class adds 403 and 429; authentication failures are the operation's own.
_UNAUTHENTICATED = problem_response(
    "The API key is missing, malformed, unknown, revoked or expired (`api-key-*` problems, "
    "`not-authenticated`)."
)

_LIMITS_EXAMPLE = {
    "organization": "acme",
    "key": "cs_live_3hG7kQ2mZp",
    "plan": {"name": "free", "display_name": "Free"},
    "rate_limits": {
        "organization": {"limit": 60, "burst": 20, "remaining": 19, "reset_seconds": 1},
        "key": {"limit": 60, "burst": 20, "remaining": 19, "reset_seconds": 1},
    },
    "quota": {
        "period": "2026-11",
        "credits": 10000,
        "used": 1234,
        "remaining": 8766,
        "reset_seconds": 585120,
        "overage": False,
    },
    "endpoints": "*",
    "timeframes": ["5m", "15m", "1h", "4h", "1d", "1w"],
    "degraded": False,
    "billing": None,
}


def _billing_warning(warning: str) -> dict | None:
    """The gateway's compact ``past_due:<epoch>`` as the customer reads it."""
    kind, _, end = warning.partition(":")
    if kind != "past_due" or not end.isdigit():
        return None
    ends = datetime.fromtimestamp(int(end), tz=UTC)
    return {
        "status": kind,
        "grace_ends_at": ends.isoformat().replace("+00:00", "Z"),
        "detail": "A payment failed. Update the payment method in the billing portal "
        "(POST /v1/account/billing/portal): the plan's limits are kept until grace_ends_at, then the "
        "organization moves to Free.",
    }


class LimitsView(PublicAPIView):
    """The caller's plan and where it stands: free of credits, but counted by the rate limits."""

    endpoint_name = "limits"
    credit_cost = 0
    plan_gated = False

    @extend_schema(
        operation_id="limits_retrieve",
        summary="Your plan, rate-limit state and monthly quota",
        description=(
            "Answers from the gateway's state without touching the database: the organization's "
            "plan, the organization-wide and per-key token buckets after this request, and the "
            "monthly credits. Costs 0 credits; it is rate limited like every call. The same state "
            "is on every response in the `RateLimit-Policy` and `RateLimit` headers."
        ),
        tags=["limits"],
        responses={
            200: inline_serializer(
                "Limits",
                {
                    "organization": serializers.CharField(),
                    "key": serializers.CharField(help_text="Public prefix of the key used."),
                    "plan": inline_serializer(
                        "LimitsPlan",
                        {"name": serializers.CharField(), "display_name": serializers.CharField()},
                    ),
                    "rate_limits": inline_serializer(
                        "LimitsRateLimits", {"organization": RateLimitWindow(), "key": RateLimitWindow()}
                    ),
                    "quota": inline_serializer(
                        "LimitsQuota",
                        {
                            "period": serializers.CharField(help_text="Calendar month (UTC), YYYY-MM."),
                            "credits": serializers.IntegerField(),
                            "used": serializers.IntegerField(),
                            "remaining": serializers.IntegerField(),
                            "reset_seconds": serializers.IntegerField(),
                            "overage": serializers.BooleanField(
                                help_text="true: calls past `credits` are served and billed as overage "
                                "(paid plans); false: refused with `quota-exceeded`."
                            ),
                        },
                    ),
                    "endpoints": serializers.JSONField(help_text='"*" or the list of endpoint names.'),
                    "timeframes": serializers.JSONField(help_text='"*" or the list of candle timeframes.'),
                    "degraded": serializers.BooleanField(
                        help_text="True while the shared limiter is unreachable (per-process limits)."
                    ),
                    "billing": inline_serializer(
                        "LimitsBillingWarning",
                        {
                            "status": serializers.ChoiceField(choices=["past_due"]),
                            "grace_ends_at": serializers.DateTimeField(
                                help_text="The plan's limits are kept until then; after it, Free's."
                            ),
                            "detail": serializers.CharField(),
                        },
                        allow_null=True,
                        help_text="A payment problem to fix (null when there is none).",
                    ),
                },
            ),
            401: _UNAUTHENTICATED,
        },
        examples=[OpenApiExample("Free plan", value=_LIMITS_EXAMPLE, response_only=True)],
    )
    def get(self, request):
        principal = request.auth
        result = self.gate_result
        if result is None:  # gateway switched off (GATEWAY_ENABLED=0 or benchmark twin)
            return Response({"organization": principal.organization_slug, "key": principal.prefix})
        plan = result.plan

        def listed(value: str):
            return "*" if value == "*" else [v for v in value.split(",") if v]

        return Response(
            {
                "organization": principal.organization_slug,
                "key": principal.prefix,
                "plan": {"name": plan.name, "display_name": plan.display_name},
                "rate_limits": {
                    "organization": {
                        "limit": plan.rate_per_minute,
                        "burst": plan.burst,
                        "remaining": result.tenant_remaining,
                        "reset_seconds": result.tenant_reset_s,
                    },
                    "key": {
                        "limit": plan.key_rate_per_minute,
                        "burst": plan.burst,
                        "remaining": result.key_remaining,
                        "reset_seconds": result.key_reset_s,
                    },
                },
                "quota": {
                    "period": f"{result.month[:4]}-{result.month[4:]}",
                    "credits": plan.monthly_credits,
                    "used": result.credits_used,
                    "remaining": result.credits_remaining,
                    "reset_seconds": result.month_reset_s,
                    "overage": plan.overage,
                },
                "endpoints": listed(plan.endpoints),
                "timeframes": listed(plan.timeframes),
                "degraded": result.degraded,
                "billing": _billing_warning(plan.billing_warning),
            }
        )


class PingView(PublicAPIView):
    """The cheapest call: checks the key and the service; the answer's headers show the limits."""

    endpoint_name = "ping"
    credit_cost = 0
    plan_gated = False

    @extend_schema(
        operation_id="ping_retrieve",
        summary="Check your key and the service",
        description=(
            "Answers `ok` with the server's clock (UTC) when the API key is valid. Costs 0 credits; "
            "it is rate limited and counted like every call, and its `RateLimit-Policy` / "
            "`RateLimit` headers show where the key stands without the body of `/v1/limits`."
        ),
        tags=["service"],
        responses={
            200: inline_serializer(
                "Ping",
                {
                    "status": serializers.CharField(),
                    "server_time": serializers.DateTimeField(help_text="The server's clock, UTC."),
                },
            ),
            401: _UNAUTHENTICATED,
        },
        examples=[
            OpenApiExample(
                "ok", value={"status": "ok", "server_time": "2026-11-24T07:30:00Z"}, response_only=True
            )
        ],
    )
    def get(self, request):
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return Response({"status": "ok", "server_time": now})


class PingAuthOnlyView(PingView):
    """Benchmark twin: key authentication on, limits/quota/metering off (``GATEWAY_BENCH_ROUTES``)."""

    gateway = False


class PingNoGatewayView(PingView):
    """Benchmark twin: the whole gateway off, no authentication either (``GATEWAY_BENCH_ROUTES``)."""

    gateway = False
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def get(self, request):
        return super().get(request)


# --- management API (JWT): the organization's usage --------------------------------------------------
class UsageQuery(QuerySerializer):
    start = serializers.DateField(
        required=False,
        help_text="First day (UTC), default: the 1st of `end`'s month. Any range; a `start` after `end` is "
        "an empty range (no rows, zero totals).",
    )
    end = serializers.DateField(required=False, help_text="Last day (UTC, inclusive), default: today.")
    group_by = serializers.ChoiceField(choices=["day", "endpoint", "key"], default="day")

    def validate(self, attrs):
        today = timezone.now().date()
        attrs.setdefault("end", today)
        attrs.setdefault("start", attrs["end"].replace(day=1))
        return attrs


_usage_row = inline_serializer(
    "UsageRow",
    {
        "day": serializers.DateField(required=False, help_text="With group_by=day."),
        "endpoint": serializers.CharField(required=False, help_text="With group_by=endpoint."),
        "key": serializers.CharField(required=False, help_text="With group_by=key: the key id."),
        "requests": serializers.IntegerField(),
        "credits": serializers.IntegerField(),
        "by_status": serializers.DictField(child=serializers.IntegerField(), help_text="2xx/3xx/4xx/5xx"),
    },
)


class UsageView(OrganizationScopedView):
    required_permissions = {"GET": roles.USAGE_READ}

    @extend_schema(
        operation_id="account_usage",
        tags=["account"],
        summary="Usage of the organization (requests and credits)",
        description=(
            "Metered public API calls of the selected organization between `start` and `end` "
            "(inclusive, UTC days), grouped by day, endpoint or API key (`key_id`), with totals. "
            "Usage is flushed from the gateway to the database every minute, so the last minute "
            "may be missing; `GET /v1/limits` shows the live monthly credit count."
        ),
        parameters=[UsageQuery],
        responses={
            200: inline_serializer(
                "Usage",
                {
                    "organization": serializers.CharField(),
                    "start": serializers.DateField(),
                    "end": serializers.DateField(),
                    "group_by": serializers.CharField(),
                    "rows": serializers.ListField(child=_usage_row),
                    "totals": inline_serializer(
                        "UsageTotals",
                        {"requests": serializers.IntegerField(), "credits": serializers.IntegerField()},
                    ),
                },
            ),
            # 401, X-Organization's 400/404 (and 403 if usage.read ever leaves a role): accounts.schema
            400: problem(
                VALIDATION_ERROR,
                "`start`/`end` not dates, `group_by` not one of its values, or an unknown parameter.",
            ),
        },
        examples=[
            OpenApiExample(
                "By day",
                response_only=True,
                value={
                    "organization": "acme",
                    "start": "2026-11-01",
                    "end": "2026-11-02",
                    "group_by": "day",
                    "rows": [
                        {
                            "day": "2026-11-01",
                            "requests": 120,
                            "credits": 115,
                            "by_status": {"2xx": 115, "3xx": 0, "4xx": 5, "5xx": 0},
                        }
                    ],
                    "totals": {"requests": 120, "credits": 115},
                },
            )
        ],
    )
    def get(self, request):
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows, totals = selectors.usage_report(
            organization_id=self.organization.pk, start=q["start"], end=q["end"], group_by=q["group_by"]
        )
        return Response(
            {
                "organization": self.organization.slug,
                "start": q["start"],
                "end": q["end"],
                "group_by": q["group_by"],
                "rows": rows,
                "totals": totals,
            }
        )


_failed_call = inline_serializer(
    "FailedCall",
    {
        "time": serializers.DateTimeField(help_text="When the call was answered (UTC)."),
        "status": serializers.IntegerField(help_text="The HTTP status answered."),
        "problem": serializers.CharField(
            help_text="The problem type's slug (`rate-limited`, `quota-exceeded`, `not-found`, ...; empty "
            "when the answer was not a problem document)."
        ),
        "path": serializers.CharField(help_text="Path and query string as called (cut to 300 characters)."),
        "request_id": serializers.CharField(help_text="The answer's `X-Request-ID`, to quote to support."),
        "key": inline_serializer(
            "FailedCallKey",
            {
                "id": serializers.CharField(help_text="The key's public id."),
                "name": serializers.CharField(help_text="Empty when the key was deleted."),
                "prefix": serializers.CharField(help_text="`cs_<env>_<id>`; never the secret."),
            },
        ),
    },
)


class UsageFailuresView(OrganizationScopedView):
    """The organization's last failed public API calls (the portal dashboard's table)."""

    required_permissions = {"GET": roles.USAGE_READ}

    @extend_schema(
        operation_id="account_usage_failures",
        tags=["account"],
        summary="The organization's last 100 failed API calls",
        description=(
            "The last 100 public API calls of the selected organization's keys that failed, newest "
            "first: refusals by the gateway (`rate-limited`, `quota-exceeded`, `plan-upgrade-required`) "
            "and every other 4xx/5xx answered to a call made with one of its keys (scope, IP allow-list, "
            "not found, validation, server errors). Calls without a valid key (401) cannot be attributed "
            "to an organization and are not listed. Live: a failure shows as soon as it is answered. "
            "Kept 30 days after the newest failure."
        ),
        responses={
            200: inline_serializer(
                "UsageFailures",
                {
                    "organization": serializers.CharField(),
                    "failures": serializers.ListField(child=_failed_call),
                },
            ),
            503: problem(SERVICE_UNAVAILABLE, "The failed calls (kept in Redis) cannot be read now."),
        },
        examples=[
            OpenApiExample(
                "A rate-limited call",
                response_only=True,
                value={
                    "organization": "acme",
                    "failures": [
                        {
                            "time": "2026-11-29T21:04:05.123456Z",
                            "status": 429,
                            "problem": "rate-limited",
                            "path": "/v1/prices?ids=bitcoin",
                            "request_id": "5f0c6a3e9b1d4c2a8e7f6d5c4b3a2910",
                            "key": {"id": "3hG7kQ2mZp", "name": "backend", "prefix": "cs_live_3hG7kQ2mZp"},
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request):
        rows = selectors.usage_failures(organization_id=self.organization.pk)
        if rows is None:
            raise ProblemError(SERVICE_UNAVAILABLE, "The list of failed calls cannot be read right now.")
        return Response(
            {
                "organization": self.organization.slug,
                "failures": [
                    {
                        "time": row.at.isoformat().replace("+00:00", "Z"),
                        "status": row.status,
                        "problem": row.problem,
                        "path": row.path,
                        "request_id": row.request_id,
                        "key": {"id": row.key_id, "name": row.key_name, "prefix": row.key_prefix},
                    }
                    for row in rows
                ],
            }
        )
