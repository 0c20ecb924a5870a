"""Process-side Prometheus instruments and the shared event counters (plumbing: imports no app).

Two kinds of numbers reach ``GET /metrics`` (apiplatform/metrics.py composes them):

* **Instruments of the web process** (prometheus-client ``Counter``/``Histogram``): HTTP requests
  and latency (:class:`MetricsMiddleware`) and the gateway's decisions (:func:`gateway_decision`,
  called by apiplatform.gateway with the ``GateResult`` it already has: no extra Redis call). With
  ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn; deploy/gunicorn.conf.py) every worker writes its values
  to files in that directory and a scrape adds up all workers; unset (``scripts/run.sh``, tests), the
  process's own registry.
* **Shared event counters** written by any process, Celery workers included, into one Redis hash
  (:func:`count`): candles written and rejected, ticks rejected as implausible jumps. A scrape reads
  the hash (:func:`shared_counts`), so the values are right whatever process produced them and
  survive restarts of the web process.

Label values are bounded (route templates, methods, status classes, plan names, timeframes,
sources); never a coin id, an organization id or a key.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.registry import REGISTRY

from apiplatform import redis_access

logger = logging.getLogger(__name__)

#: The route label of a request that matched no URL pattern (404s of random paths): one value.
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "candlestack_http_requests",
    "HTTP requests answered, by route template, method and status class.",
    ["route", "method", "status_class"],
)
HTTP_LATENCY = Histogram(
    "candlestack_http_request_duration_seconds",
    "Time from the first middleware to the response, by route template, method and status class.",
    ["route", "method", "status_class"],
    buckets=LATENCY_BUCKETS,
)
GATEWAY_DECISIONS = Counter(
    "candlestack_gateway_decisions",
    "Decisions of the API gateway's gate (billing.gate.admit) by plan and outcome; degraded=true: "
    "decided by the per-process fallback because Redis was unreachable.",
    ["plan", "outcome", "degraded"],
)

#: gate status code (billing.limits) -> outcome label
GATE_OUTCOMES = {0: "admitted", 1: "rate_limited", 2: "quota_exceeded", 3: "not_in_plan"}
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> CollectorRegistry:
    """What a scrape reads for the process instruments: every worker's files in multiprocess mode,
    else this process's default registry."""
    if multiprocess_dir():
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return reg
    return REGISTRY


def route_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None) if match is not None else None
    return "/" + route if route else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Counts and times every request by route template (``resolver_match.route``, never the raw
    path), method and status class. First in ``MIDDLEWARE`` so that it times everything."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            method = request.method if request.method in KNOWN_METHODS else "other"
            labels = (route_label(request), method, f"{response.status_code // 100}xx")
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)
        except Exception:  # metrics must never turn an answer into an error
            logger.warning("could not record HTTP metrics", exc_info=True)
        return response


def gateway_decision(*, plan: str, status: int, degraded: bool) -> None:
    GATEWAY_DECISIONS.labels(plan, GATE_OUTCOMES.get(status, "other"), "true" if degraded else "false").inc()


# --- shared event counters (Redis) -----------------------------------------------------------------
def shared_counters_key() -> str:
    return redis_access.key("metrics", "events")


def count(name: str, amount: int = 1, **labels: str) -> None:
    """Add ``amount`` to the shared counter ``name`` with ``labels`` (bounded values only). One
    HINCRBY on the ``ingestion`` connection; a Redis failure is logged and the count lost (a metric
    never breaks the work it measures)."""
    if amount == 0:
        return
    field = name + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    try:
        redis_access.client("ingestion").hincrby(shared_counters_key(), field, amount)
    except redis_access.ERRORS:
        logger.warning("could not update the shared counter %s", name, exc_info=True)


def shared_counts() -> dict[str, list[tuple[dict[str, str], int]]]:
    """Every shared counter: name -> [(labels, value)]."""
    raw = redis_access.client("ingestion").hgetall(shared_counters_key())
    out: dict[str, list[tuple[dict[str, str], int]]] = {}
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else field
        name, _, label_text = text.partition("|")
        labels = dict(pair.split("=", 1) for pair in label_text.split(",") if "=" in pair)
        out.setdefault(name, []).append((labels, int(value)))
    return out
