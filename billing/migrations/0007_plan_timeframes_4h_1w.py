"""Timeframes 4h and 1w (marketdata migration 0004) join the plans that list their source: a plan
with 1h gets 4h, a plan with 1d gets 1w (both are roll-ups of those). ``["*"]`` plans have them
already. The gateway's Redis copies of the plans expire within their TTL (billing.plan_cache)."""

from django.db import migrations

ADDED_WITH = {"4h": "1h", "1w": "1d"}
ORDER = ["1m", "5m", "15m", "1h", "4h", "1d", "1w"]


def _sorted(timeframes: list[str]) -> list[str]:
    return sorted(timeframes, key=lambda tf: ORDER.index(tf) if tf in ORDER else len(ORDER))


def add(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in Plan.objects.all():
        tfs = list(plan.timeframes or [])
        if "*" in tfs:
            continue
        new = [tf for tf, source in ADDED_WITH.items() if source in tfs and tf not in tfs]
        if new:
            plan.timeframes = _sorted(tfs + new)
            plan.save(update_fields=["timeframes"])


def remove(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in Plan.objects.all():
        tfs = list(plan.timeframes or [])
        kept = [tf for tf in tfs if tf not in ADDED_WITH]
        if kept != tfs:
            plan.timeframes = kept
            plan.save(update_fields=["timeframes"])


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_stripe_billing")]

    operations = [migrations.RunPython(add, remove)]
