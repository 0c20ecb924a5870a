"""Migration 0007: plans listing 1h get 4h, plans listing 1d get 1w (their roll-ups); "*" unchanged."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from billing.models import Plan

MIGRATION = importlib.import_module("billing.migrations.0007_plan_timeframes_4h_1w")
LIMITS = {"rate_per_minute": 60, "burst": 10, "key_rate_per_minute": 60, "monthly_credits": 1000}


@pytest.mark.django_db
def test_plans_with_1h_and_1d_get_4h_and_1w_and_the_reverse_removes_them():
    Plan.objects.filter(name__in=["t-hourly", "t-all", "t-minutes"]).delete()
    hourly = Plan.objects.create(name="t-hourly", display_name="H", **LIMITS, timeframes=["5m", "1h", "1d"])
    everything = Plan.objects.create(name="t-all", display_name="A", **LIMITS, timeframes=["*"])
    minutes = Plan.objects.create(name="t-minutes", display_name="M", **LIMITS, timeframes=["1m", "5m"])
    MIGRATION.add(apps, None)
    MIGRATION.add(apps, None)  # idempotent
    assert Plan.objects.get(pk=hourly.pk).timeframes == ["5m", "1h", "4h", "1d", "1w"]
    assert Plan.objects.get(pk=everything.pk).timeframes == ["*"]
    assert Plan.objects.get(pk=minutes.pk).timeframes == ["1m", "5m"]
    MIGRATION.remove(apps, None)
    assert Plan.objects.get(pk=hourly.pk).timeframes == ["5m", "1h", "1d"]


@pytest.mark.django_db
def test_the_migrated_free_plan_offers_4h_and_1w():
    free = Plan.objects.filter(name="free").first()
    if free is None:
        pytest.skip("no seeded free plan in this database")
    assert {"4h", "1w"} <= set(free.timeframes)
