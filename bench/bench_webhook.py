"""Benchmark: the Stripe webhook's answer time (verify the signature, store the event once, queue it).

Stripe expects a 2xx quickly and retries otherwise; the endpoint does no Stripe call and applies
nothing in the request (a task does). Measured in-process through Django's full stack (middleware,
URL routing, the view, PostgreSQL insert, the broker publish after commit), per delivery:

* ``new``: a new event (verify + insert + queue);
* ``duplicate``: a repeated delivery of a stored event (verify + lookup);
* ``healthz``: ``GET /healthz`` in the same run, the baseline of the stack itself.

It runs against a throw-away test database (TEST_DATABASE_NAME, created and destroyed here) and the
broker of CELERY_BROKER_URL (its messages are purged at the end).

    DEBUG=1 TEST_DATABASE_NAME=test_cs_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python bench/bench_webhook.py [--deliveries 500]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_bench")

import django

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from tests.stripe_standin.webhooks import event, signature_header  # noqa: E402


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return f"p50 {p(0.5):6.2f} ms  p95 {p(0.95):6.2f} ms  p99 {p(0.99):6.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--deliveries", type=int, default=500)
    args = parser.parse_args()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    if broker.connection_pool.connection_kwargs.get("db", 0) == 0:
        sys.exit("use a broker database of its own (CELERY_BROKER_URL=redis://.../<n>, n > 0): it is purged")
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        client = Client()
        secret = settings.STRIPE_WEBHOOK_SECRET
        bodies = [
            json.dumps(
                event("customer.subscription.updated", {"id": f"sub_{i}", "status": "active"})
            ).encode()
            for i in range(args.deliveries)
        ]

        def post(body: bytes) -> float:
            header = signature_header(body, secret)
            started = time.perf_counter()
            response = client.post(
                "/billing/stripe/webhook",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=header,
            )
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.content
            return elapsed

        for body in bodies[:20]:  # warm-up (connections, imports)
            post(body)
        new = [post(body) for body in bodies[20:]]
        duplicate = [post(body) for body in bodies[20:]]
        healthz = []
        for _ in range(len(new)):
            started = time.perf_counter()
            client.get("/healthz")
            healthz.append(time.perf_counter() - started)
        base = statistics.median(healthz)
        print(f"deliveries: {len(new)}")
        print(f"new event     {_ms(new)}   median {statistics.median(new) / base:4.1f}x healthz")
        print(f"duplicate     {_ms(duplicate)}   median {statistics.median(duplicate) / base:4.1f}x healthz")
        print(f"healthz       {_ms(healthz)}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        broker.flushdb()


if __name__ == "__main__":
    main()
