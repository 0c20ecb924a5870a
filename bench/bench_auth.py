"""Benchmark: API-key authentication on the warm path.

Measures, per request, through ``accounts.authentication.ApiKeyAuthentication.authenticate`` on a
real DRF request:

* warm path (process-local entry): µs per request, SQL queries, Redis round trips;
* sustained run over several seconds (local entries expire every KEY_LOCAL_CACHE_TTL s, refreshed
  from Redis; "last used" piggy-backs on a refresh): amortised Redis round trips per request;
* Redis path (another process's cold start, local cache empty, Redis entry present);
* database path (nothing cached) for comparison.

Redis round trips are counted by wrapping the accounts Redis client (a pipeline counts as one).
It runs against a throw-away test database (TEST_DATABASE_NAME, created and destroyed here) and
the Redis database of REDIS_URL (only its own keys are touched).

    DEBUG=1 TEST_DATABASE_NAME=test_cs_bench REDIS_URL=redis://127.0.0.1:6379/11 \
        .venv/bin/python bench/bench_auth.py [--requests 20000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rest_framework.request import Request  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402

from accounts import keycache  # noqa: E402
from accounts.authentication import ApiKeyAuthentication  # noqa: E402
from accounts.services.api_keys import api_key_create  # noqa: E402
from accounts.services.organizations import organization_create  # noqa: E402
from apiplatform import redis_access  # noqa: E402


class RoundTrips:
    def __init__(self):
        self.count = 0
        client = redis_access.client()
        self._execute_command = client.execute_command
        self._pipeline = client.pipeline

        def execute_command(*args, **kwargs):
            self.count += 1
            return self._execute_command(*args, **kwargs)

        def pipeline(*args, **kwargs):
            pipe = self._pipeline(*args, **kwargs)
            original = pipe.execute

            def execute(*a, **kw):
                self.count += 1
                return original(*a, **kw)

            pipe.execute = execute
            return pipe

        client.execute_command = execute_command
        client.pipeline = pipeline


def make_request(full_key: str) -> Request:
    return Request(APIRequestFactory().get("/v1/coins", HTTP_AUTHORIZATION=f"Bearer {full_key}"))


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def report(name: str, samples_us: list[float], queries: int, trips: int, n: int) -> None:
    samples = sorted(samples_us)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(
        f"{name:<44} n={n:>6}  mean={statistics.fmean(samples):7.2f} µs"
        f"  p50={statistics.median(samples):7.2f} µs  p99={p99:7.2f} µs"
        f"  SQL/req={queries / n:.4f}  Redis RT/req={trips / n:.5f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    old_name = connection.settings_dict["NAME"]
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    key_id = None
    try:
        org = organization_create(name="Bench Org")
        api_key, full = api_key_create(organization=org, name="bench")
        key_id = api_key.key_id
        auth = ApiKeyAuthentication()
        rt = RoundTrips()
        print(
            f"database {test_name}, "
            f"Redis {redis_access.client().connection_pool.connection_kwargs.get('db')}, "
            f"local TTL {settings.ACCOUNTS['KEY_LOCAL_CACHE_TTL']} s"
        )

        # database path: nothing cached anywhere
        def cold():
            keycache.clear_local_cache()
            redis_access.client().delete(keycache.entry_key(api_key.key_id))
            auth.authenticate(make_request(full))

        n_cold = 300
        rt.count = 0
        with CaptureQueriesContext(connection) as q:
            samples = timed(cold, n_cold)
        # the DELETE issued by the benchmark itself is not part of the auth path
        report("database path (no cache)", samples, len(q.captured_queries), rt.count - n_cold, n_cold)

        # Redis path: a process whose local cache is empty, Redis warm
        auth.authenticate(make_request(full))

        def redis_path():
            keycache.clear_local_cache()
            auth.authenticate(make_request(full))

        n_redis = 2000
        rt.count = 0
        with CaptureQueriesContext(connection) as q:
            samples = timed(redis_path, n_redis)
        report("Redis path (local cache empty)", samples, len(q.captured_queries), rt.count, n_redis)

        # warm path
        request = make_request(full)
        auth.authenticate(request)
        rt.count = 0
        with CaptureQueriesContext(connection) as q:
            samples = timed(lambda: auth.authenticate(make_request(full)), args.requests)
        report(
            "warm path (incl. building the request)",
            samples,
            len(q.captured_queries),
            rt.count,
            args.requests,
        )
        build = timed(lambda: make_request(full), args.requests)
        print(f"{'  of which building the DRF request':<44} mean={statistics.fmean(build):7.2f} µs")

        # sustained: several seconds, so local entries expire and refresh from Redis
        rt.count = 0
        n = 0
        deadline = time.monotonic() + args.seconds
        with CaptureQueriesContext(connection) as q:
            t0 = time.perf_counter()
            while time.monotonic() < deadline:
                auth.authenticate(request)
                n += 1
            elapsed = time.perf_counter() - t0
        print(
            f"{'sustained ' + str(args.seconds) + ' s (refresh every TTL)':<44} n={n:>6}  "
            f"mean={elapsed / n * 1e6:7.2f} µs  SQL total={len(q.captured_queries)}  "
            f"Redis RT total={rt.count}  "
            f"Redis RT/req={rt.count / n:.6f}"
        )
    finally:
        if key_id is not None:
            redis_access.client().delete(keycache.entry_key(key_id))
            redis_access.client().hdel(keycache.last_used_key(), key_id)
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
