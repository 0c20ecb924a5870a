"""The seeded plans (also created by migration 0002; values documented in docs/plans-and-limits.md).

``DEFAULT_PLANS`` is used to recreate a missing plan (e.g. a test that flushed the database) so the
gateway never fails because the default plan row is gone; existing rows are never overwritten.
"""

from __future__ import annotations

DEFAULT_PLANS: dict[str, dict] = {
    "free": {
        "display_name": "Free",
        "description": "For trying the API: every endpoint, candles from 5m up.",
        "rate_per_minute": 60,
        "burst": 20,
        "key_rate_per_minute": 60,
        "monthly_credits": 10_000,
        "endpoints": ["*"],
        "timeframes": ["5m", "15m", "1h", "4h", "1d", "1w"],
        "concurrent_streams": 2,
        "price_cents_monthly": 0,
        "sort_order": 0,
    },
    "developer": {
        "display_name": "Developer",
        "description": "For side projects and prototypes: all timeframes including 1m.",
        "rate_per_minute": 300,
        "burst": 60,
        "key_rate_per_minute": 300,
        "monthly_credits": 250_000,
        "endpoints": ["*"],
        "timeframes": ["*"],
        "concurrent_streams": 10,
        "price_cents_monthly": 2_900,
        "overage": True,
        "overage_cents_per_1000": 40,
        "sort_order": 1,
    },
    "pro": {
        "display_name": "Pro",
        "description": "For production apps: higher limits, several keys at full speed.",
        "rate_per_minute": 1_200,
        "burst": 200,
        "key_rate_per_minute": 600,
        "monthly_credits": 2_000_000,
        "endpoints": ["*"],
        "timeframes": ["*"],
        "concurrent_streams": 100,
        "price_cents_monthly": 9_900,
        "overage": True,
        "overage_cents_per_1000": 20,
        "sort_order": 2,
    },
    "enterprise": {
        "display_name": "Enterprise",
        "description": "Custom volume and support; priced on request.",
        "rate_per_minute": 6_000,
        "burst": 1_000,
        "key_rate_per_minute": 3_000,
        "monthly_credits": 50_000_000,
        "endpoints": ["*"],
        "timeframes": ["*"],
        "concurrent_streams": 1000,
        "price_cents_monthly": 0,
        "sort_order": 3,
    },
}
