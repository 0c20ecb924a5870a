"""Liveness and readiness probes.

``/healthz`` answers 200 as long as the process serves requests and touches nothing else.
``/readyz`` checks each dependency (PostgreSQL, Redis, the Celery broker) and answers 503 with a
JSON body naming what is down — names only: the error (hosts, ports, driver messages) goes to the
log, never to the (unauthenticated) caller. The checks run side by side, each bounded to
``READYZ_CHECK_TIMEOUT`` seconds: a dependency that does not answer in time counts as down, so a
probe holds a web worker about that long at most, whatever is down.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def _timeout() -> float:
    return float(settings.READYZ_CHECK_TIMEOUT)


def check_database() -> None:
    """One pooled connection (waiting at most the check timeout for it) answers ``SELECT 1``."""
    pool = connection.pool  # type: ignore[attr-defined]  # the PostgreSQL backend's psycopg pool
    pool.open(wait=False)
    with pool.connection(timeout=math.ceil(_timeout())) as conn:
        conn.execute("SELECT 1").fetchone()


def check_redis() -> None:
    """The cache's Redis answers PING (a client of its own with the check timeout)."""
    client = redis.Redis.from_url(
        str(settings.CACHES["default"]["LOCATION"]),
        socket_timeout=_timeout(),
        socket_connect_timeout=_timeout(),
    )
    try:
        if not client.ping():
            raise ConnectionError("PING was not answered")
    finally:
        client.close()


def check_broker() -> None:
    from apiplatform.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=math.ceil(_timeout()))


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
}


def _run(name: str, check: Callable[[], None], results: dict[str, str]) -> None:
    try:
        check()
    except Exception as exc:
        # The reason is for operators (the log), not for the caller (the body names the check only).
        logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        results[name] = "down"
    else:
        results[name] = "ok"
    finally:
        if name == "database":
            connection.close()  # this thread's Django connection, if the check opened one


def run_checks() -> dict[str, str]:
    """``{check name: "ok" | "down"}``; every check runs in its own thread and is given
    ``READYZ_CHECK_TIMEOUT`` seconds (plus a small grace) to answer, all at the same time."""
    results: dict[str, str] = {}
    threads = [
        threading.Thread(target=_run, args=(name, check, results), name=f"readyz-{name}", daemon=True)
        for name, check in CHECKS.items()
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + _timeout() + 0.25
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    out = {}
    for name in CHECKS:
        status = results.get(name)
        if status is None:
            logger.warning("readiness check %s did not answer within %.1f s", name, _timeout())
            status = "down"
        out[name] = status
    return out


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    results = run_checks()
    down = sorted(name for name, status in results.items() if status != "ok")
    body = {
        "status": "ok" if not down else "unavailable",
        "down": down,
        "checks": {name: {"status": status} for name, status in results.items()},
        "version": settings.SPECTACULAR_SETTINGS["VERSION"],
    }
    return JsonResponse(body, status=200 if not down else 503)
