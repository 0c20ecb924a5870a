"""Helpers of the metrics tests: scrape GET /metrics and read its samples."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apiplatform import redis_access, telemetry

TOKEN = "metrics-test-token-" + "x" * 40


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Exposition text -> {(sample name, frozenset of label items): value}."""
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    """The sample's value, 0 when absent (a labelled counter that never counted is absent)."""
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics_settings(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    return settings


@pytest.fixture
def scrape(client, metrics_settings):
    """GET /metrics with the token through the Django test client -> parsed samples."""

    def do() -> dict[tuple[str, frozenset], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        return samples(response.content.decode())

    return do


@pytest.fixture(autouse=True)
def _clean_shared_counters():
    """The shared counters live in Redis (not the cache database the global fixture clears)."""
    r = redis_access.client("ingestion")
    keys = [
        telemetry.shared_counters_key(),
        redis_access.key("cg", "metrics"),
        redis_access.key("cg", "metrics", "calls"),
    ]
    keys += [redis_access.key("cg", "budget"), redis_access.key("cg", "budget") + ":pause"]
    r.delete(*keys)
    yield
    r.delete(*keys)
