"""Benchmark of the public market data API against the stock DRF way, same run, same rows.

    .venv/bin/python bench/bench_api.py [--duration 10] [--rounds 2] [--connections 32] [--workers 2]

Table: H3's benchmark database (``BENCH_DATABASE_URL``, default
postgres://postgres@127.0.0.1:5432/candlestack_bench, >= 10 million 1m candles written through the
write path by ``bench/bench_write_path.py`` — run that first). This script migrates it (adds the
tables of the other apps), creates a tenant on an unlimited "bench" plan with a real API key, a
djangorestframework-api-key key for the stock views, and market snapshots for every coin (through
``marketdata.services.snapshots_upsert``) if there are none.

Endpoints, each served three ways by gunicorn (``--workers`` workers, gthread with ``--threads``
threads and keep-alive by default, ``--threads 1`` for sync workers; loopback), load from
``wrk`` (or a bounded httpx/asyncio generator) in a second process, ``--connections`` connections:
  * ``ours``       the real endpoint: key auth + rate limits + metering + Redis response cache (hits);
  * ``uncached``   the same endpoint with the response cache off (every request queries PostgreSQL);
  * ``stock``      DRF ``ModelSerializer`` + ``JSONRenderer`` + ``HasAPIKey`` over the same rows.
for ``GET /v1/prices?ids=<100 ids>`` and ``GET /v1/coins/{id}/candles?timeframe=1m&limit=500``.
Prints req/s and p50/p99 per variant (median over rounds), ratios, and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import tempfile
from pathlib import Path

import httpx
from benchdb import BENCH_DB
from loadgen import REDIS_COUNTER, ROOT, generator_name, load, run, start_gunicorn

SETTINGS = """
import os
from apiplatform.settings import *  # noqa: F403
INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework_api_key"]  # noqa: F405
ROOT_URLCONF = "bench_api_urls"
MARKETDATA_RESPONSE_CACHE = os.environ.get("BENCH_RESPONSE_CACHE", "1") == "1"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
"""

URLS = """
from django.shortcuts import get_object_or_404
from django.urls import path
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

from apiplatform.urls import urlpatterns as project
from marketdata.models import CandleListing, Coin, MarketSnapshot


class PriceSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="coin.upstream_id")

    class Meta:
        model = MarketSnapshot
        fields = ["id", "price", "market_cap", "volume_24h", "change_24h_pct", "last_updated"]


class CandleSerializer(serializers.ModelSerializer):
    time = serializers.DateTimeField(source="bucket_start")

    class Meta:
        model = CandleListing
        fields = ["time", "open", "high", "low", "close", "volume", "volume_24h", "closed", "filled"]


class StockPrices(APIView):
    authentication_classes = []
    permission_classes = [HasAPIKey]
    renderer_classes = [JSONRenderer]

    def get(self, request):
        ids = request.query_params["ids"].split(",")
        qs = MarketSnapshot.objects.select_related("coin").filter(coin__upstream_id__in=ids)
        return Response({"data": PriceSerializer(qs, many=True).data})


class StockCandles(APIView):
    authentication_classes = []
    permission_classes = [HasAPIKey]
    renderer_classes = [JSONRenderer]

    def get(self, request, coin_id):
        coin = get_object_or_404(Coin, upstream_id=coin_id)
        timeframe = request.query_params.get("timeframe", "1h")
        limit = int(request.query_params.get("limit", 500))
        qs = CandleListing.objects.filter(coin_id=coin.id, timeframe=timeframe)
        qs = qs.order_by("-bucket_start")[:limit]
        return Response({"data": CandleSerializer(qs, many=True).data})


urlpatterns = [
    path("v1/bench/stock/prices", StockPrices.as_view()),
    path("v1/bench/stock/coins/<str:coin_id>/candles", StockCandles.as_view()),
    *project,
]
"""

SETUP = """
import django
django.setup()
from datetime import UTC, datetime
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import services as billing
from billing.models import Plan
from marketdata import services
from marketdata.models import Coin, MarketSnapshot
from rest_framework_api_key.models import APIKey

Plan.objects.update_or_create(name="bench", defaults=dict(
    display_name="Bench", rate_per_minute=10_000_000, burst=1_000_000, key_rate_per_minute=10_000_000,
    monthly_credits=10**12, endpoints=["*"], timeframes=["*"]))
org = organization_create(name="API bench")
_, key = api_key_create(organization=org, name="bench", audit=False)
billing.organization_plan_set(organization=org, plan_name="bench")
_, stock_key = APIKey.objects.create_key(name="bench")
coins = list(Coin.objects.order_by("id").values_list("id", "upstream_id"))
if not MarketSnapshot.objects.exists():
    now = datetime.now(UTC)
    services.snapshots_upsert(rows=[
        services.SnapshotIn(cid, 100.0 + i, 1e9 * (2000 - i), i + 1, 1e7, 101.0, 99.0, 0.5, now, now)
        for i, (cid, _) in enumerate(coins)])
print(key)
print(stock_key)
print(",".join(u for _, u in coins[:100]))
from django.db import connection
with connection.cursor() as cur:  # a coin with >= 500 1m candles, from the middle of the universe
    for cid, upstream in coins[len(coins) // 2:] + coins[: len(coins) // 2]:
        cur.execute("SELECT count(*) FROM (SELECT 1 FROM marketdata_candle WHERE coin_id = %s "
                    "AND timeframe = '1m' LIMIT 500) x", [cid])
        if cur.fetchone()[0] == 500:
            break
print(upstream)
"""


MEASURE = """
import sys, time, django
django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
client = Client(HTTP_X_API_KEY=sys.argv[1])
for url in sys.argv[2:]:
    for _ in range(5):
        assert client.get(url).status_code == 200
    n = 200
    sent[0] = 0
    with CaptureQueriesContext(connection) as q:
        t0 = time.perf_counter()
        for _ in range(n):
            client.get(url)
        dt = time.perf_counter() - t0
    print(f"{dt / n * 1000:.2f} {sent[0] / n:.2f} {len(q) / n:.2f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="as scripts/run.sh")
    parser.add_argument(
        "--threads", type=int, default=1, help=">1: gthread workers; 1: sync workers (run.sh)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_api_"))
    (tmp / "bench_api_settings.py").write_text(SETTINGS)
    (tmp / "bench_api_urls.py").write_text(URLS)
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}",
        "DJANGO_SETTINGS_MODULE": "bench_api_settings",
        "DATABASE_URL": BENCH_DB,
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": "benchapi",  # own Redis keys: no usage counters mixed into the platform's
    }
    run("import django; django.setup(); from django.core.management import call_command; "
        "call_command('migrate', verbosity=0)", env)  # fmt: skip
    rows = run(
        "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
        "c.execute('SELECT count(*) FROM marketdata_candle'); print(c.fetchone()[0])",
        env,
    ).strip()
    key, stock_key, ids, coin = run(SETUP, env).split()[-4:]
    warm_urls = [f"/v1/prices?ids={ids}", f"/v1/coins/{coin}/candles?timeframe=1m&limit=500"]
    out = run(REDIS_COUNTER + MEASURE, {**env, "BENCH_RESPONSE_CACHE": "1"}, argv=[key, *warm_urls])
    warm = [line.split() for line in out.strip().splitlines()[-2:]]
    servers = []
    try:
        ours, base = start_gunicorn(
            {**env, "BENCH_RESPONSE_CACHE": "1"}, workers=args.workers, threads=args.threads
        )
        servers.append(ours)
        raw, base_raw = start_gunicorn(
            {**env, "BENCH_RESPONSE_CACHE": "0"}, workers=args.workers, threads=args.threads
        )
        servers.append(raw)
        mine, stock = {"X-API-Key": key}, {"Authorization": f"Api-Key {stock_key}"}
        candles = f"/coins/{coin}/candles?timeframe=1m&limit=500"
        variants = {
            "prices ours": (f"{base}/v1/prices?ids={ids}", mine),
            "prices uncached": (f"{base_raw}/v1/prices?ids={ids}", mine),
            "prices stock": (f"{base}/v1/bench/stock/prices?ids={ids}", stock),
            "candles ours": (f"{base}/v1{candles}", mine),
            "candles uncached": (f"{base_raw}/v1{candles}", mine),
            "candles stock": (f"{base}/v1/bench/stock{candles}", stock),
        }
        for name, (url, headers) in variants.items():  # check and warm every worker
            r = httpx.get(url, headers=headers, timeout=30)
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            n = len(r.json()["data"])
            assert n == (100 if name.startswith("prices") else 500), (name, n)
            load(url, headers, 2, args.connections)
        results: dict[str, list] = {name: [] for name in variants}
        for rnd in range(args.rounds):
            for name, (url, headers) in variants.items():
                res = load(url, headers, args.duration, args.connections)
                results[name].append(res)
                print(f"round {rnd + 1} {name:17s} {res[0]:8.0f} req/s  p50 {res[1]:7.2f} ms  "
                      f"p99 {res[2]:7.2f} ms  non-2xx {res[3]}")  # fmt: skip
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {n: tuple(statistics.median(r[i] for r in rs) for i in range(3)) for n, rs in results.items()}
    loadgen = generator_name()
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"table: {rows} candle rows ({BENCH_DB.rsplit('/', 1)[1]}); gunicorn {args.workers} "
          f"{'sync workers' if args.threads <= 1 else f'gthread workers x {args.threads} threads'}; "
          f"{loadgen} c={args.connections}; {args.rounds} x {args.duration}s; medians")  # fmt: skip
    print(f"{'variant':18s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, (rps, p50, p99) in med.items():
        print(f"{name:18s} {rps:8.0f} {p50:8.2f} {p99:8.2f}")
    print()
    for label, (ms, rt, sql) in zip(("prices", "candles"), warm, strict=True):
        print(f"{label:8s} warm cached request in process: {ms} ms, {rt} Redis round trips, {sql} SQL")
    for what in ("prices", "candles"):
        o, u, s = med[f"{what} ours"][0], med[f"{what} uncached"][0], med[f"{what} stock"][0]
        print(f"{what:8s} ours/stock {o / s:5.2f}x   uncached/stock {u / s:5.2f}x   (target uncached >= 3x, "
              f"p99 < 50 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
