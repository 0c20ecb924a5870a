"""Seed the four public plans (values documented in docs/plans-and-limits.md; editable in the admin)."""

from django.db import migrations

PLANS = [
    # name, display, rpm, burst, key rpm, monthly credits, timeframes, price (cents), description
    ("free", "Free", 60, 20, 60, 10_000, ["5m", "15m", "1h", "1d"], 0,
     "For trying the API: every endpoint, candles from 5m up."),
    ("developer", "Developer", 300, 60, 300, 250_000, ["*"], 2_900,
     "For side projects and prototypes: all timeframes including 1m."),
    ("pro", "Pro", 1_200, 200, 600, 2_000_000, ["*"], 9_900,
     "For production apps: higher limits, several keys at full speed."),
    ("enterprise", "Enterprise", 6_000, 1_000, 3_000, 50_000_000, ["*"], 0,
     "Custom volume and support; priced on request."),
]  # fmt: skip


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for order, (name, display, rpm, burst, krpm, credits, timeframes, price, desc) in enumerate(PLANS):
        Plan.objects.update_or_create(
            name=name,
            defaults={
                "display_name": display,
                "description": desc,
                "rate_per_minute": rpm,
                "burst": burst,
                "key_rate_per_minute": krpm,
                "monthly_credits": credits,
                "endpoints": ["*"],
                "timeframes": timeframes,
                "price_cents_monthly": price,
                "sort_order": order,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(name__in=[p[0] for p in PLANS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
