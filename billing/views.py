"""Billing endpoints: ``GET /v1/limits`` (API key) and ``GET /v1/account/usage`` (JWT)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from apiplatform.gateway import PublicAPIView

_window = inline_serializer(
    "RateLimitWindow",
    {
        "limit": serializers.IntegerField(help_text="Sustained requests per minute."),
        "burst": serializers.IntegerField(help_text="Requests that may be sent at once."),
        "remaining": serializers.IntegerField(help_text="Requests that would be admitted right now."),
        "reset_seconds": serializers.IntegerField(help_text="Seconds until `remaining` is back at `burst`."),
    },
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
    },
    "endpoints": "*",
    "timeframes": ["5m", "15m", "1h", "1d"],
    "degraded": False,
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
        tags=["account"],
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
                        "LimitsRateLimits", {"organization": _window, "key": _window}
                    ),
                    "quota": inline_serializer(
                        "LimitsQuota",
                        {
                            "period": serializers.CharField(help_text="Calendar month (UTC), YYYY-MM."),
                            "credits": serializers.IntegerField(),
                            "used": serializers.IntegerField(),
                            "remaining": serializers.IntegerField(),
                            "reset_seconds": serializers.IntegerField(),
                        },
                    ),
                    "endpoints": serializers.JSONField(help_text='"*" or the list of endpoint names.'),
                    "timeframes": serializers.JSONField(help_text='"*" or the list of candle timeframes.'),
                    "degraded": serializers.BooleanField(
                        help_text="True while the shared limiter is unreachable (per-process limits)."
                    ),
                },
            ),
        },
        examples=[OpenApiExample("Free plan", value=_LIMITS_EXAMPLE, response_only=True)],
    )
    def get(self, request):
        principal = request.auth
        result = self.gate_result
        if result is None:  # gateway switched off (benchmark twin): nothing to report
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
                },
                "endpoints": listed(plan.endpoints),
                "timeframes": listed(plan.timeframes),
                "degraded": result.degraded,
            }
        )


class LimitsNoGatewayView(LimitsView):
    """Benchmark twin of LimitsView with the gateway (limits, quota, metering) switched off.
    Only routed when ``GATEWAY_BENCH_ROUTES`` is on."""

    gateway = False
