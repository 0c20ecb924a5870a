"""``GET /metrics``: the operators' Prometheus endpoint (a composition point: it reads every app).

What a scrape returns (docs/operations.md, "Metrics", lists every metric with its labels):

* the web process's instruments (apiplatform.telemetry): HTTP requests and latency, gateway
  decisions — summed over all gunicorn workers when ``PROMETHEUS_MULTIPROC_DIR`` is set;
* state read at scrape time from PostgreSQL and Redis (:class:`StateCollector`), right whatever
  process (web or Celery worker) produced it: ingestion lag per timeframe, dead letters, open
  quality flags, Celery queue depths, last runs of the schedules, usage flush lag, Stripe webhook
  backlog, the CoinGecko client's shared counters and budget, the history job's progress per
  timeframe, and the shared event counters (candles written/rejected, ticks rejected as implausible
  jumps).

Each part of the state is collected on its own: a part that fails (e.g. the broker is down) is
logged and reported as ``candlestack_metrics_collector_up{collector="..."} 0``; the rest is served.

Access: ``Authorization: Bearer <METRICS_TOKEN>`` or a client address in ``METRICS_ALLOWED_IPS``
(CIDR ranges); otherwise 401 (problem+json). Not a PublicAPIView: never metered, never rate-limited
by the tenant gateway.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from accounts.authentication import client_ip
from apiplatform import problems, redis_access, telemetry
from apiplatform.exceptions import problem_http_response
from apiplatform.jobs import selectors as jobs_selectors
from apiplatform.jobs.base import QUEUES
from billing import metering
from billing import selectors as billing_selectors
from ingestion import history as ingestion_history
from ingestion import selectors as ingestion_selectors
from ingestion.coingecko.metrics import CALL_COUNTERS, COUNTERS, LATENCY_BUCKETS, ClientMetrics
from ingestion.models import QualityFlag
from marketdata import selectors as marketdata_selectors
from marketdata.models import TIMEFRAME_DELTA, TIMEFRAMES

logger = logging.getLogger(__name__)

#: A coin is stale at a timeframe when its newest closed candle ended more than this many buckets ago.
STALE_BUCKETS = marketdata_selectors.LAG_BEHIND_BUCKETS
#: kombu's Redis transport keeps a queue's messages of priority p > 0 in ``<queue>\x06\x16<p>``.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
#: Quality flags whose range is candles (a ``stale`` flag is about a coin's snapshot, not its candles).
_CANDLE_FLAG_KINDS = (QualityFlag.Kind.JUMP, QualityFlag.Kind.MISSING)
#: Upstream counter totals exposed as ``candlestack_upstream_events_total{event}``.
_UPSTREAM_EVENTS = tuple(name for name in COUNTERS if name not in CALL_COUNTERS)


# --- the state collectors ----------------------------------------------------------------------------
def collect_ingestion(now: datetime) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "candlestack_ingestion_lag_seconds",
        "Now minus the end of the newest closed candle of any active coin.",
        labels=["timeframe"],
    )
    newest = GaugeMetricFamily(
        "candlestack_ingestion_newest_candle_end_timestamp_seconds",
        "End of the newest closed candle of any active coin (Unix time).",
        labels=["timeframe"],
    )
    stale = GaugeMetricFamily(
        "candlestack_ingestion_stale_coins",
        f"Coins of the polled universe whose newest closed candle ended more than {STALE_BUCKETS} "
        "buckets ago (or that have none).",
        labels=["timeframe"],
    )
    bucket = GaugeMetricFamily(
        "candlestack_ingestion_bucket_seconds", "Length of a bucket of the timeframe.", labels=["timeframe"]
    )
    universe = 0
    readings = marketdata_selectors.candles_lag(now=now, behind_buckets=STALE_BUCKETS, timeframes=TIMEFRAMES)
    for reading in readings:
        universe = reading.coins
        bucket.add_metric([reading.timeframe], TIMEFRAME_DELTA[reading.timeframe].total_seconds())
        stale.add_metric([reading.timeframe], reading.coins_behind)
        if reading.newest_end is not None:
            newest.add_metric([reading.timeframe], reading.newest_end.timestamp())
            lag.add_metric([reading.timeframe], (now - reading.newest_end).total_seconds())
    yield from (lag, newest, stale, bucket)
    yield GaugeMetricFamily(
        "candlestack_ingestion_universe_coins",
        "Active coins with a market snapshot (the polled universe).",
        value=universe,
    )


def collect_jobs(now: datetime) -> Iterator[Metric]:
    letters = GaugeMetricFamily(
        "candlestack_dead_letters",
        "Dead letters by owning app, task and status (pending: waiting for an operator).",
        labels=["app", "task", "status"],
    )
    for app, task, status, n in jobs_selectors.dead_letters_by_status():
        letters.add_metric([app, task, status], n)
    yield letters
    flags = GaugeMetricFamily(
        "candlestack_quality_flags_open",
        "Unresolved data-quality flags by kind and timeframe.",
        labels=["kind", "timeframe"],
    )
    flagged = GaugeMetricFamily(
        "candlestack_candles_flagged",
        "Buckets inside unresolved quality flags, awaiting a re-fetch or an operator: kind=jump, "
        "candles suspected implausible (still served until a re-fetch replaces them or a check clears "
        "them); kind=missing, closed buckets with no candle. Nothing is quarantined: invalid rows are "
        "refused by the write path (candlestack_candles_rejected_total).",
        labels=["kind", "timeframe"],
    )
    for row in ingestion_selectors.quality_flags_open_by_timeframe():
        flags.add_metric([row.kind, row.timeframe], row.flags)
        if row.kind in _CANDLE_FLAG_KINDS and row.timeframe in TIMEFRAME_DELTA:
            flagged.add_metric([row.kind, row.timeframe], row.span // TIMEFRAME_DELTA[row.timeframe])
    yield from (flags, flagged)


def collect_schedules(now: datetime) -> Iterator[Metric]:
    dispatched = GaugeMetricFamily(
        "candlestack_schedule_last_run_timestamp_seconds",
        "When beat last sent the schedule's task (django_celery_beat last_run_at; Unix time).",
        labels=["schedule", "task"],
    )
    succeeded = GaugeMetricFamily(
        "candlestack_job_last_success_timestamp_seconds",
        "When the newest successful run of the job finished (JobRun; jobs that record runs only).",
        labels=["job"],
    )
    states = jobs_selectors.schedules_state()
    for state in states:
        if state.sent_at is not None:
            dispatched.add_metric([state.name, state.task], state.sent_at.timestamp())
    last_success = jobs_selectors.jobs_last_success(jobs=sorted({state.task for state in states}))
    for job, at in sorted(last_success.items()):
        succeeded.add_metric([job], at.timestamp())
    yield from (dispatched, succeeded)
    beat = max((state.sent_at for state in states if state.sent_at is not None), default=None)
    if beat is not None:
        yield GaugeMetricFamily(
            "candlestack_beat_last_run_timestamp_seconds",
            "The newest last_run_at of any schedule: beat's last sign of life (Unix time).",
            value=beat.timestamp(),
        )


_broker_clients: dict[str, redis.Redis] = {}


def _broker() -> redis.Redis | None:
    url = str(settings.CELERY_BROKER_URL)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = _broker_clients.get(url)
    if client is None:
        client = _broker_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


def collect_queues(now: datetime) -> Iterator[Metric]:
    client = _broker()
    if client is None:
        return
    depth = GaugeMetricFamily(
        "candlestack_celery_queue_depth",
        "Messages waiting in the Celery queue (broker LLEN).",
        labels=["queue"],
    )
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
    lengths = pipe.execute()
    n = len(_PRIORITY_SUFFIXES)
    for i, queue in enumerate(QUEUES):
        depth.add_metric([queue], sum(lengths[i * n : (i + 1) * n]))
    yield depth


def collect_billing(now: datetime) -> Iterator[Metric]:
    flush = metering.usage_flush_lag(now=now)
    if flush.last_flush_at is not None:
        yield GaugeMetricFamily(
            "candlestack_usage_last_flush_timestamp_seconds",
            "When the last finished usage flush (Redis -> PostgreSQL) emptied the live counters (Unix time).",
            value=flush.last_flush_at.timestamp(),
        )
    if flush.lag is not None:
        yield GaugeMetricFamily(
            "candlestack_usage_flush_lag_seconds",
            "How long the oldest usage not yet in PostgreSQL has waited (0: nothing waits).",
            value=flush.lag.total_seconds(),
        )
    yield GaugeMetricFamily(
        "candlestack_usage_pending_batches",
        "Usage batches rotated out of Redis but not applied yet.",
        value=flush.pending_batches,
    )
    yield GaugeMetricFamily(
        "candlestack_usage_live_counters",
        "Usage counters counted since the last flush rotated them.",
        value=flush.live_counters,
    )
    stripe = billing_selectors.stripe_webhook_state()
    waiting, oldest, failed = stripe.unapplied, stripe.oldest_unapplied_at, stripe.failed
    yield GaugeMetricFamily(
        "candlestack_stripe_events_waiting",
        "Stripe webhook events received and not applied yet.",
        value=waiting,
    )
    yield GaugeMetricFamily(
        "candlestack_stripe_event_oldest_waiting_seconds",
        "Age of the oldest Stripe event received and not applied yet (0: none waiting).",
        value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
    yield GaugeMetricFamily(
        "candlestack_stripe_events_failed",
        "Stripe webhook events that failed to apply (dead-lettered).",
        value=failed,
    )


def collect_upstream(now: datetime) -> Iterator[Metric]:
    r = redis_access.client("ingestion")
    client_metrics = ClientMetrics(r, redis_access.key("cg", "metrics"))
    labels = ["endpoint", "key"]
    families = {
        "calls": CounterMetricFamily(
            "candlestack_upstream_calls",
            "CoinGecko HTTP attempts by endpoint and key fingerprint.",
            labels=labels,
        ),
        "retries": CounterMetricFamily(
            "candlestack_upstream_retries", "CoinGecko attempts after the first of a call.", labels=labels
        ),
        "rate_limited": CounterMetricFamily(
            "candlestack_upstream_rate_limited", "CoinGecko HTTP 429 answers.", labels=labels
        ),
    }
    latency = HistogramMetricFamily(
        "candlestack_upstream_latency_seconds",
        "CoinGecko HTTP attempt latency by endpoint and key fingerprint.",
        labels=labels,
    )
    for (endpoint, key), values in sorted(client_metrics.shared_calls().items()):
        for name, family in families.items():
            family.add_metric([endpoint, key], values.get(name, 0))
        cumulative = 0.0
        buckets = []
        for i, bound in enumerate((*LATENCY_BUCKETS, float("inf"))):
            cumulative += values.get(f"lat{i}", 0)
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency.add_metric([endpoint, key], buckets, values.get("latsum", 0.0))
    yield from families.values()
    yield latency
    events = CounterMetricFamily(
        "candlestack_upstream_events", "CoinGecko client events (all endpoints and keys).", labels=["event"]
    )
    state = ingestion_selectors.upstream_state()
    for name in _UPSTREAM_EVENTS:
        events.add_metric([name], state.totals.get(name, 0))
    yield events
    yield GaugeMetricFamily(
        "candlestack_upstream_budget_used",
        "Upstream calls granted in the current budget window (all workers).",
        value=state.budget_used,
    )
    yield GaugeMetricFamily(
        "candlestack_upstream_budget_limit",
        "Upstream calls allowed per budget window.",
        value=state.budget_limit,
    )
    yield GaugeMetricFamily(
        "candlestack_upstream_paused_seconds",
        "Seconds every worker still holds off after an upstream 429.",
        value=state.paused_seconds,
    )


def collect_history(now: datetime) -> Iterator[Metric]:
    families = {
        "coins": GaugeMetricFamily(
            "candlestack_history_series", "Active coins: series the history job fills.", labels=["timeframe"]
        ),
        "complete": GaugeMetricFamily(
            "candlestack_history_series_complete",
            "Series filled back to the history target (or to the coin's first upstream data).",
            labels=["timeframe"],
        ),
        "buckets": GaugeMetricFamily(
            "candlestack_history_remaining_candles",
            "Candles the history job has still to fetch (an upper bound).",
            labels=["timeframe"],
        ),
        "calls": GaugeMetricFamily(
            "candlestack_history_remaining_calls",
            "Upstream calls the history job has still to make (an upper bound; 2 per range).",
            labels=["timeframe"],
        ),
    }
    for p in ingestion_history.progress_all(now=now):
        families["coins"].add_metric([p.timeframe], p.coins)
        families["complete"].add_metric([p.timeframe], p.complete)
        families["buckets"].add_metric([p.timeframe], p.remaining_buckets)
        families["calls"].add_metric([p.timeframe], 2 * p.remaining_chunks)
    yield from families.values()


def collect_events(now: datetime) -> Iterator[Metric]:
    counts = telemetry.shared_counts()
    written = CounterMetricFamily(
        "candlestack_candles_written",
        "Candles inserted or changed by the write path, by timeframe and source (committed).",
        labels=["timeframe", "source"],
    )
    for labels, value in counts.get("candles_written", []):
        written.add_metric([labels.get("timeframe", ""), labels.get("source", "")], value)
    rejected = CounterMetricFamily(
        "candlestack_candles_rejected", "Candle rows rejected by validation, by source.", labels=["source"]
    )
    for labels, value in counts.get("candles_rejected", []):
        rejected.add_metric([labels.get("source", "")], value)
    jumps = sum(value for _, value in counts.get("ticks_rejected_jump", []))
    yield from (written, rejected)
    yield CounterMetricFamily(
        "candlestack_ticks_rejected_jump", "Ticks rejected as implausible price jumps.", value=jumps
    )


COLLECTORS: dict[str, Callable[[datetime], Iterable[Metric]]] = {
    "ingestion": collect_ingestion,
    "jobs": collect_jobs,
    "schedules": collect_schedules,
    "queues": collect_queues,
    "billing": collect_billing,
    "upstream": collect_upstream,
    "history": collect_history,
    "events": collect_events,
}


class StateCollector(Collector):
    """Every state collector, each on its own (one failing does not hide the others)."""

    def __init__(self, clock: Callable[[], datetime] = timezone.now):
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        up = GaugeMetricFamily(
            "candlestack_metrics_collector_up",
            "1 if the collector read its source at this scrape, 0 if it failed (see the web log).",
            labels=["collector"],
        )
        took = GaugeMetricFamily(
            "candlestack_metrics_collector_seconds",
            "Time the collector took at this scrape.",
            labels=["collector"],
        )
        for name, collect in COLLECTORS.items():
            started = time.perf_counter()
            try:
                metrics = list(collect(now))
            except Exception:
                logger.exception("metrics collector %s failed", name)
                up.add_metric([name], 0)
            else:
                yield from metrics
                up.add_metric([name], 1)
            took.add_metric([name], time.perf_counter() - started)
        yield from (up, took)


# --- the view -----------------------------------------------------------------------------------------
def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(value, strict=False) for value in settings.METRICS_ALLOWED_IPS]


def authorized(request: HttpRequest) -> bool:
    """The bearer token matches ``METRICS_TOKEN`` (constant-time), or the client address is in
    ``METRICS_ALLOWED_IPS``."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.strip().partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in _allowed_networks())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        response = problem_http_response(
            request,
            problems.NOT_AUTHENTICATED,
            "GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>` or a client address in "
            "METRICS_ALLOWED_IPS.",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    combined = CollectorRegistry(auto_describe=False)
    combined.register(_Both(telemetry.registry(), StateCollector()))
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))  # text 0.0.4 or OpenMetrics
    return HttpResponse(encoder(combined), content_type=content_type)


class _Both(Collector):
    def __init__(self, *sources: Collector):
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()
