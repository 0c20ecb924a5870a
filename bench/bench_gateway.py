"""Benchmark of the API gateway: what auth + rate limits + quota + metering cost per request.

    .venv/bin/python bench/bench_gateway.py [--duration 10] [--rounds 3] [--connections 8]

Serves one cheap endpoint from gunicorn (4 sync workers as scripts/run.sh, or ``--threads N`` for
gthread workers; loopback) in four variants, in the same
run, interleaved round by round so that machine noise hits all of them alike:

* ``gateway``  ``GET /v1/ping``: API-key auth + the Lua limits/quota/plan call + metering;
* ``authonly`` the same view with key auth only (``/v1/bench/ping-authonly``);
* ``off``      the same view with no authentication and no gateway (``/v1/bench/ping-nogateway``);
* ``floor``    key auth plus ONE bare Redis round trip (``PING``) and nothing else
  (``/v1/bench/ping-floor``): the cheapest any gateway can be that asks Redis once per request,
  which exact shared limits, a countdown on every response and metering that survives a killed
  web process all need. Its cost against ``off`` is what no Lua or Python tuning can remove;
* ``stock``    the "stock" approach: DRF + djangorestframework-api-key ``HasAPIKey`` + a DRF
  ``SimpleRateThrottle`` keyed by the API key on the Redis cache (rate above the offered load, so
  it never refuses), answering the same body.

All four answer the same body (``{"status": "ok", "server_time": ...}``), so the differences are
the gateway's alone. (``/v1/limits`` is not used: its body is built from the gateway's answer,
so with the gateway off it would be a different, smaller response.)

Load comes from ``wrk`` (Debian: ``apt-get install -y wrk``) in a second process on loopback;
without it a bounded httpx/asyncio generator is used. Prints req/s and p99 per variant (median of
the rounds), the gateway's cost ratio, gateway vs stock, and — measured in process — the Redis
round trips and SQL queries of one warm ``/v1/limits`` request.

It uses its own database (``BENCH_DATABASE_NAME``, default ``candlestack_bench_gateway``, dropped
and recreated) and the Redis database of ``REDIS_URL`` (flushed keys: only the gateway's and the
cache's, through the normal code paths). Environment: ``DATABASE_URL`` for the server/credentials.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
from loadgen import REDIS_COUNTER, ROOT, generator_name, load, run, start_gunicorn

SETTINGS = """
from apiplatform.settings import *  # noqa: F403
INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework_api_key"]  # noqa: F405
ROOT_URLCONF = "bench_gateway_urls"
GATEWAY_BENCH_ROUTES = True
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
"""

URLS = """
from django.urls import path
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

from apiplatform.urls import urlpatterns as project
from billing import gate
from billing.views import PingAuthOnlyView, PingView


class KeyThrottle(SimpleRateThrottle):
    scope = "stock"
    rate = "5000/s"  # above the offered load: measures the throttle's cost, never refuses

    def get_cache_key(self, request, view):
        key = request.META.get("HTTP_AUTHORIZATION", "").split()[-1]
        return self.cache_format % {"scope": self.scope, "ident": key.split(".")[0]}


class StockLimits(APIView):
    authentication_classes = []
    permission_classes = [HasAPIKey]
    throttle_classes = [KeyThrottle]

    get = PingView.get  # the same body as /v1/ping


class PingFloor(PingAuthOnlyView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        conn = gate.thread_connection()  # the gateway's own connection
        conn.send_packed_command([b"*1\\r\\n$4\\r\\nPING\\r\\n"], check_health=False)
        assert conn.read_response() == "PONG"


urlpatterns = [
    *project,
    path("v1/bench/stock", StockLimits.as_view()),
    path("v1/bench/ping-floor", PingFloor.as_view()),
]
"""

SETUP = """
import django
django.setup()
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import services as b
from billing.models import Plan
from rest_framework_api_key.models import APIKey

Plan.objects.update_or_create(name="bench", defaults=dict(
    display_name="Bench", rate_per_minute=6_000_000, burst=10**6, key_rate_per_minute=6_000_000,
    monthly_credits=10**12, endpoints=["*"], timeframes=["*"]))
org = organization_create(name="Bench Org")
b.organization_plan_set(organization=org, plan_name="bench")
_row, key = api_key_create(organization=org, name="bench", audit=False)
_stock, stock_key = APIKey.objects.create_key(name="bench")
print(key)
print(stock_key)
"""

MEASURE = """
import django, sys
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

def measure(path, **headers):
    client = Client(**headers)
    for _ in range(3):
        assert client.get(path).status_code == 200
    n = 200
    sent[0] = 0
    with CaptureQueriesContext(connection) as q:
        for _ in range(n):
            assert client.get(path).status_code == 200
    return sent[0] / n, len(q) / n

print(*measure("/v1/ping", HTTP_X_API_KEY=sys.argv[1]),
      *measure("/v1/bench/stock", HTTP_AUTHORIZATION=f"Api-Key {sys.argv[2]}"))
"""


def bench_database_url(name: str) -> tuple[str, str]:
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack")
    parts = urlparse(base)
    return urlunparse(parts._replace(path=f"/{name}")), urlunparse(parts._replace(path="/postgres"))


def recreate_database(name: str, admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="as scripts/run.sh")
    parser.add_argument(
        "--threads", type=int, default=1, help=">1: gthread workers; 1: sync workers (run.sh)"
    )
    args = parser.parse_args()

    db_name = os.environ.get("BENCH_DATABASE_NAME", "candlestack_bench_gateway")
    db_url, admin_url = bench_database_url(db_name)
    tmp = Path(tempfile.mkdtemp(prefix="bench_gateway_"))
    (tmp / "bench_gateway_settings.py").write_text(SETTINGS)
    (tmp / "bench_gateway_urls.py").write_text(URLS)
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "bench_gateway_settings",
        "DATABASE_URL": db_url,
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": "bench",  # gateway keys apart from the tests' (same ids in another database)
    }
    print(f"database {db_name} (recreated), redis {env.get('REDIS_URL', 'default')}; migrating ...")
    recreate_database(db_name, admin_url)
    run(["manage.py", "migrate", "-v", "0"], env)
    key, stock_key = run(SETUP, env).split()[-2:]

    rt, sql, stock_rt, stock_sql = (
        float(x) for x in run(REDIS_COUNTER + MEASURE, env, argv=[key, stock_key]).split()
    )

    server, base = start_gunicorn(env, workers=args.workers, threads=args.threads)
    try:
        variants = {
            "gateway": (f"{base}/v1/ping", {"X-API-Key": key}),
            "authonly": (f"{base}/v1/bench/ping-authonly", {"X-API-Key": key}),
            "floor": (f"{base}/v1/bench/ping-floor", {"X-API-Key": key}),
            "off": (f"{base}/v1/bench/ping-nogateway", {}),
            "stock": (f"{base}/v1/bench/stock", {"Authorization": f"Api-Key {stock_key}"}),
        }
        for name, (url, headers) in variants.items():  # warm every worker's caches
            statuses = {httpx.get(url, headers=headers).status_code for _ in range(20)}
            assert statuses == {200}, (name, statuses)
            load(url, headers, 2, args.connections)
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        for rnd in range(args.rounds):
            for name, (url, headers) in variants.items():
                rps, _p50, p99, bad = load(url, headers, args.duration, args.connections)
                results[name].append((rps, p99, bad))
                print(f"round {rnd + 1} {name:9s} {rps:8.0f} req/s  p99 {p99:6.2f} ms  non-2xx {bad}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {
        name: (
            statistics.median(r[0] for r in rs),
            statistics.median(r[1] for r in rs),
            sum(r[2] for r in rs),
        )
        for name, rs in results.items()
    }
    loadgen = generator_name()
    print()
    kind = f"gthread x{args.threads}" if args.threads > 1 else "sync"
    print(f"GET /v1/ping variants, gunicorn {args.workers} {kind} workers, {loadgen} c={args.connections}, "
          f"{args.rounds} x {args.duration}s, medians")  # fmt: skip
    print(f"{'variant':10s} {'req/s':>9s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for name, (rps, p99, bad) in med.items():
        print(f"{name:10s} {rps:9.0f} {p99:8.2f} {bad:8d}")
    on, off, stock, floor = med["gateway"][0], med["off"][0], med["stock"][0], med["floor"][0]
    print()
    print(f"gateway cost (throughput): {(1 - on / off) * 100:5.1f} %   (target <= 15 %)")
    print(f"gateway vs stock:          {on / stock:5.2f} x     (target >= 3 x)")
    print(f"floor (auth + 1 bare Redis round trip): cost {(1 - floor / off) * 100:5.1f} %, "
          f"{floor / stock:5.2f} x stock; the gateway reaches {on / floor * 100:5.1f} % of it")  # fmt: skip
    print(f"p99 gateway / off:         {med['gateway'][1] / med['off'][1]:5.2f}")
    print(f"warm path per request:     {rt:.2f} Redis round trips, {sql:.2f} SQL queries (targets <= 2, 0)")
    print(f"stock, per request:        {stock_rt:.2f} Redis round trips, {stock_sql:.2f} SQL queries")


if __name__ == "__main__":
    main()
