"""Benchmark: server time of the portal's dashboard (``/portal/``) for an organization with 20 API keys
and 30 days of usage (issue 15: under 150 ms).

Fills a throw-away test database (TEST_DATABASE_NAME, created and destroyed here) with the hourly
usage rows the metering flush writes (30 days x 24 hours x 20 keys x 3 endpoints x 2 status
classes = 86,400 ``UsageRecord`` rows), logs the owner in, and times the whole Django request of
``GET /portal/`` in this process (middleware, session, selectors, template), reporting p50/p95/p99/max
and the SQL queries per request.

    DEBUG=1 TEST_DATABASE_NAME=test_cs_bench REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/bench_portal_dashboard.py [--requests 200]

The usage comes from ``billing.selectors.usage_breakdown`` (one query for the three groupings).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services.api_keys import api_key_create  # noqa: E402
from accounts.services.organizations import organization_create  # noqa: E402
from billing.models import Plan, UsageRecord  # noqa: E402
from billing.plans import DEFAULT_PLANS  # noqa: E402

KEYS, DAYS = 20, 30
ENDPOINTS = ("prices", "candles", "markets")


def fill() -> User:
    for name, fields in DEFAULT_PLANS.items():
        Plan.objects.get_or_create(name=name, defaults=fields)
    owner = User.objects.create_user(email="bench@example.test", password="bench password 123")  # noqa: S106
    org = organization_create(name="Bench Org", owner=owner)
    key_ids = [api_key_create(organization=org, name=f"key {i}", audit=False)[0].key_id for i in range(KEYS)]
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    rows = [
        UsageRecord(
            organization_id=org.pk,
            key_id=key_id,
            endpoint=endpoint,
            status_class=status_class,
            hour=now - timedelta(hours=h),
            requests=10 if status_class == "2xx" else 1,
            credits=10 if status_class == "2xx" else 0,
        )
        for h in range(DAYS * 24)
        for key_id in key_ids
        for endpoint in ENDPOINTS
        for status_class in ("2xx", "4xx")
    ]
    UsageRecord.objects.bulk_create(rows, batch_size=10_000)
    with connection.cursor() as cursor:  # statistics, as autovacuum keeps them on a live database
        cursor.execute("ANALYZE billing_usagerecord")
    return owner


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    old_name = connection.settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        owner = fill()
        client = Client()
        client.force_login(owner)
        for _ in range(5):  # warm-up: templates compiled, connections open
            assert client.get("/portal/").status_code == 200
        times = []
        with CaptureQueriesContext(connection) as queries:
            for _ in range(args.requests):
                t0 = time.perf_counter()
                response = client.get("/portal/")
                times.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200
        times.sort()

        def pct(p: float) -> float:
            return times[min(len(times) - 1, int(p / 100 * len(times)))]

        print(
            f"database {test_name}: {UsageRecord.objects.count():,} usage rows, {KEYS} keys, {DAYS} days; "
            f"{os.cpu_count()} CPUs"
        )
        print(
            f"GET /portal/  n={len(times)}  p50={statistics.median(times):.1f} ms  p95={pct(95):.1f} ms  "
            f"p99={pct(99):.1f} ms  max={times[-1]:.1f} ms  "
            f"SQL/request={len(queries.captured_queries) / len(times):.1f}"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
