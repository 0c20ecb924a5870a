"""Liveness and readiness probes.

``/healthz`` answers 200 as long as the process serves requests and touches nothing else.
``/readyz`` checks each dependency (PostgreSQL, Redis, the Celery broker) with a short timeout
and answers 503 with a JSON body naming what is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 2


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    # the cache's own Redis connection pool (RedisCache._cache is missing from django-stubs)
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]  # see above
    if not client.ping():
        raise ConnectionError("PING was not answered")


def check_broker() -> None:
    from apiplatform.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
}


def run_checks() -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"status": "ok"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return results


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    results = run_checks()
    down = sorted(name for name, result in results.items() if result["status"] != "ok")
    body = {
        "status": "ok" if not down else "unavailable",
        "down": down,
        "checks": results,
        "version": settings.SPECTACULAR_SETTINGS["VERSION"],
    }
    return JsonResponse(body, status=200 if not down else 503)
