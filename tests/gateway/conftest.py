"""Fixtures for the gateway tests: organizations with real API keys, plans, a clean gateway state."""

from __future__ import annotations

import importlib
import itertools

import pytest
import redis.connection
from rest_framework.test import APIClient

from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import gate, services
from billing.limits import US
from billing.models import Plan

_seq = itertools.count(1)
SEED = importlib.import_module("billing.migrations.0002_seed_plans")


def ensure_seeded_plans() -> None:
    """Transactional tests flush the database, seeded plans included: put them back."""
    from django.apps import apps

    SEED.seed(apps, None)


@pytest.fixture
def clock(monkeypatch):
    """The gateway's clock, frozen; tests move it explicitly."""
    state = {"now": 1_790_000_000 * US}
    monkeypatch.setattr(gate, "clock_override", lambda: state["now"])
    return state


@pytest.fixture
def round_trips(monkeypatch):
    """Redis commands sent by this process (a pipeline or a script counts as one): ``["n"]``."""
    sent = {"n": 0}
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent["n"] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


@pytest.fixture
def plans(db):
    ensure_seeded_plans()
    return {p.name: p for p in Plan.objects.all()}


@pytest.fixture
def make_plan(db):
    def make(name: str, **fields) -> Plan:
        values = {
            "display_name": name.title(),
            "rate_per_minute": 60,
            "burst": 5,
            "key_rate_per_minute": 60,
            "monthly_credits": 1000,
            "endpoints": ["*"],
            "timeframes": ["*"],
        }
        values.update(fields)
        plan, _ = Plan.objects.update_or_create(name=name, defaults=values)
        return plan

    return make


@pytest.fixture
def tenant(db, plans):
    """(organization, full API key) on the default plan."""

    def make(plan_name: str | None = None):
        org = organization_create(name=f"Gateway Org {next(_seq)}")
        _row, full_key = api_key_create(organization=org, name="k", audit=False)
        if plan_name:
            services.organization_plan_set(organization=org, plan_name=plan_name)
        return org, full_key

    return make


def key_client(full_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=full_key)
    return client


def parse_ratelimit(value: str) -> dict[str, dict[str, int]]:
    """'"minute";r=4;t=1, "month";r=9;t=5' -> {"minute": {"r": 4, "t": 1}, "month": {...}}"""
    out: dict[str, dict[str, int]] = {}
    for item in value.split(","):
        name, *params = item.strip().split(";")
        out[name.strip('"')] = {k: int(v) for k, v in (p.split("=") for p in params)}
    return out
