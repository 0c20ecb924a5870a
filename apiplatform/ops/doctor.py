"""``manage.py doctor``: one line per check of a deployment, ok / warn / fail.

Each check reads through the owning app's selectors (the same functions the metrics use) and the
project's plumbing (``apiplatform.health`` for PostgreSQL and the broker, ``apiplatform.redis_access``
for every Redis connection). All checks run side by side, each in its own thread and given
``timeout`` seconds: a dependency that does not answer in time fails its checks, it never hangs the
command. ``warn`` is worth a look and does not fail the run; ``fail`` does (exit status 1).

Thresholds (module constants below) are chosen so that a healthy deployment never trips them
between two runs of its periodic jobs; docs/operations.md ("manage.py doctor") lists them.
"""

from __future__ import annotations

import contextlib
import functools
import smtplib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import checks as django_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apiplatform import health, redis_access
from apiplatform.env import check_secret, check_secret_key
from apiplatform.jobs import selectors as jobs_selectors
from apiplatform.jobs.base import QUEUES
from billing import metering
from billing import selectors as billing_selectors
from marketdata import partitions
from marketdata import selectors as marketdata_selectors
from marketdata.models import TIMEFRAME_DELTA

OK, WARN, FAIL = "ok", "warn", "fail"

#: Beat writes its schedules' ``last_run_at`` every 3 minutes (django-celery-beat's sync): silent longer
#: than this, it is not running.
BEAT_SILENT_AFTER = timedelta(minutes=6)
#: Ingestion lag that fails, in buckets of the timeframe (plus the grace below).
INGESTION_LAG_BUCKETS = 3
INGESTION_LAG_GRACE = timedelta(minutes=2)
#: Usage waiting longer than this many flush periods fails.
FLUSH_LAG_PERIODS = 3
#: A received Stripe event not applied after this long fails (the re-queue job runs every 5 minutes).
STRIPE_UNAPPLIED_AFTER = timedelta(minutes=15)
#: No webhook event for this long is worth a look (a live account receives events daily).
STRIPE_SILENT_AFTER = timedelta(days=7)
#: Seconds each check is given (``--timeout``).
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Result:
    check: str
    status: str  # OK, WARN or FAIL
    detail: str

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "ok": self.ok, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Context:
    now: datetime
    timeout: float


Check = Callable[[Context], Result | Iterable[Result]]


def _age(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# --- configuration ---------------------------------------------------------------------------------
def check_configuration(ctx: Context) -> Result:
    """The secret rules the settings enforce at start-up in production (apiplatform.env), and Django's
    deployment checks (``check --deploy``) when DEBUG is off."""
    weak = []
    secrets: list[Callable[[], object]] = [
        lambda: check_secret_key(settings.SECRET_KEY, production=True),
        lambda: check_secret("JWT_SIGNING_KEY", settings.SIMPLE_JWT["SIGNING_KEY"], production=True),
        lambda: check_secret("API_KEY_PEPPER", settings.ACCOUNTS["API_KEY_PEPPER"], production=True),
    ]
    # Each key (unset is refused at start-up in production; in development one derives from SECRET_KEY).
    secrets += [
        functools.partial(check_secret, "ALERTS_SECRET_KEYS", key, production=True, derivable=False)
        for key in settings.ALERTS_SECRET_KEYS
    ]
    for rule in secrets:
        try:
            rule()
        except ImproperlyConfigured as exc:
            reason = str(exc).split(":")[0].split(";")[0]
            if reason not in weak:  # ALERTS_SECRET_KEYS may hold several keys
                weak.append(reason)
    if settings.DEBUG:
        detail = "DEBUG=1: development settings, not fit for production"
        return Result("configuration", WARN, detail + (f" ({'; '.join(weak)})" if weak else ""))
    if weak:
        return Result("configuration", FAIL, "; ".join(weak))
    messages = [
        m
        for m in django_checks.run_checks(include_deployment_checks=True)
        if m.level >= django_checks.WARNING and not m.is_silenced()
    ]
    errors = sorted({m.id or "?" for m in messages if m.level >= django_checks.ERROR})
    warnings = sorted({m.id or "?" for m in messages if m.level < django_checks.ERROR})
    if errors:
        return Result("configuration", FAIL, f"check --deploy errors: {', '.join(errors)}")
    if warnings:
        return Result("configuration", WARN, f"check --deploy warnings: {', '.join(warnings)}")
    return Result("configuration", OK, "production settings, secrets strong, check --deploy clean")


# --- dependencies ----------------------------------------------------------------------------------
def check_database(ctx: Context) -> Result:
    health.check_database()
    return Result("postgresql", OK, f"SELECT 1 answered ({connection.settings_dict['NAME']})")


def _redis_check(name: str) -> Check:
    def check(ctx: Context) -> Result:
        if name == "cache":
            health.check_redis()
        elif not redis_access.client(name).ping():
            return Result(f"redis:{name}", FAIL, "PING not answered")
        return Result(f"redis:{name}", OK, "PING answered")

    return check


def check_broker(ctx: Context) -> Result:
    health.check_broker()
    return Result("broker", OK, "connected")


def check_migrations(ctx: Context) -> Result:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        return Result("migrations", FAIL, f"{len(names)} not applied: {', '.join(names[:5])}{more}")
    return Result("migrations", OK, "all applied")


# --- data and jobs ---------------------------------------------------------------------------------
def check_partitions(ctx: Context) -> Result:
    """The current candle partition and the next ``CANDLE_PARTITIONS_AHEAD - 1`` of every timeframe
    must exist (fail); the farthest one is created by the hourly job after a span begins (warn)."""
    ahead = settings.CANDLE_PARTITIONS_AHEAD
    required = partitions.partitions_missing_ahead(now=ctx.now, ahead=max(ahead - 1, 0))
    if required:
        names = [name for names in required.values() for name in names]
        return Result(
            "partitions",
            FAIL,
            f"missing: {', '.join(names)} (the hourly job marketdata.maintain_partitions makes them)",
        )
    farthest = partitions.partitions_missing_ahead(now=ctx.now, ahead=ahead)
    if farthest:
        names = [name for names in farthest.values() for name in names]
        return Result("partitions", WARN, f"not created yet: {', '.join(names)}")
    return Result("partitions", OK, f"current + {ahead} ahead for {', '.join(TIMEFRAME_DELTA)}")


def check_beat(ctx: Context) -> Result:
    tick = jobs_selectors.beat_last_tick()
    if not tick.schedules:
        return Result("beat", FAIL, "no every-minute schedule enabled (run manage.py setup_schedules)")
    if tick.last_run_at is None:
        return Result("beat", FAIL, "has never sent an every-minute schedule")
    age = ctx.now - tick.last_run_at
    if age > BEAT_SILENT_AFTER:
        return Result("beat", FAIL, f"silent: last tick {_age(age)} ago (limit {_age(BEAT_SILENT_AFTER)})")
    return Result("beat", OK, f"last tick {_age(max(age, timedelta(0)))} ago")


def check_workers(ctx: Context) -> list[Result]:
    """Which workers consume each queue (Celery's active_queues broadcast; a worker busy in a solo
    pool cannot answer: production workers run the prefork pool)."""
    from apiplatform.celery import app

    replies = app.control.inspect(timeout=max(min(ctx.timeout / 2, 2.0), 0.2)).active_queues() or {}
    results = []
    for queue in QUEUES:
        workers = sorted(w for w, queues in replies.items() if any(q.get("name") == queue for q in queues))
        if workers:
            results.append(Result(f"workers:{queue}", OK, f"{len(workers)} alive: {', '.join(workers)}"))
        else:
            results.append(Result(f"workers:{queue}", FAIL, "no worker consumes this queue"))
    return results


def check_ingestion_lag(ctx: Context) -> Result:
    lags = marketdata_selectors.candles_lag(now=ctx.now)
    if all(lag.newest_end is None for lag in lags) and not marketdata_selectors.coins_count():
        return Result("ingestion_lag", WARN, "no coins yet (the daily ingestion.sync_universe job adds them)")
    late, behind, parts = [], [], []
    for lag in lags:
        limit = TIMEFRAME_DELTA[lag.timeframe] * INGESTION_LAG_BUCKETS + INGESTION_LAG_GRACE
        parts.append(f"{lag.timeframe} {_age(lag.lag)}")
        if lag.lag is None or lag.lag > limit:
            late.append(f"{lag.timeframe} {_age(lag.lag)} (limit {_age(limit)})")
        if lag.coins_behind:
            behind.append(f"{lag.timeframe} {lag.coins_behind}")
    if late:
        return Result("ingestion_lag", FAIL, "newest closed candle too old: " + ", ".join(late))
    if behind:
        return Result("ingestion_lag", WARN, f"{', '.join(parts)}; coins behind: {', '.join(behind)}")
    return Result("ingestion_lag", OK, ", ".join(parts))


def check_dead_letters(ctx: Context) -> Result:
    groups = jobs_selectors.dead_letters_waiting()
    if not groups:
        return Result("dead_letters", OK, "none waiting")
    total = sum(g.waiting for g in groups)
    top = ", ".join(f"{g.task_name} x{g.waiting}" for g in groups[:3])
    return Result("dead_letters", FAIL, f"{total} waiting (admin: Jobs > Dead letters): {top}")


def check_usage_flush(ctx: Context) -> Result:
    lag = metering.usage_flush_lag(now=ctx.now)
    limit = timedelta(seconds=settings.BILLING_USAGE_FLUSH_SECONDS * FLUSH_LAG_PERIODS)
    pending = f", {lag.pending_batches} batch(es) pending" if lag.pending_batches else ""
    if lag.lag is None:
        return Result("usage_flush", WARN, "usage waiting and no flush has finished yet")
    if lag.lag > limit:
        return Result(
            "usage_flush", FAIL, f"behind: usage waiting {_age(lag.lag)} (limit {_age(limit)}){pending}"
        )
    if not lag.waiting:
        return Result("usage_flush", OK, "nothing waiting")
    return Result("usage_flush", OK, f"usage waiting {_age(lag.lag)}{pending}")


def check_stripe(ctx: Context) -> Result:
    if not settings.STRIPE_SECRET_KEY:
        return Result(
            "stripe", WARN, "not configured (STRIPE_SECRET_KEY empty): billing endpoints answer 503"
        )
    if not settings.STRIPE_WEBHOOK_SECRET:
        return Result("stripe", FAIL, "STRIPE_WEBHOOK_SECRET empty: webhook events are refused")
    state = billing_selectors.stripe_webhook_state()
    if state.failed:
        return Result(
            "stripe", FAIL, f"{state.failed} webhook event(s) failed (admin: Billing > Stripe events)"
        )
    if state.oldest_unapplied_at is not None and ctx.now - state.oldest_unapplied_at > STRIPE_UNAPPLIED_AFTER:
        waited = _age(ctx.now - state.oldest_unapplied_at)
        return Result("stripe", FAIL, f"a webhook event received {waited} ago is not applied yet")
    if state.last_received_at is None:
        return Result("stripe", WARN, "configured; no webhook event received yet")
    age = ctx.now - state.last_received_at
    if age > STRIPE_SILENT_AFTER:
        return Result("stripe", WARN, f"configured; last webhook event {_age(age)} ago")
    return Result("stripe", OK, f"configured; last webhook event {_age(max(age, timedelta(0)))} ago")


# --- email ---------------------------------------------------------------------------------------------
def _smtp_target() -> str:
    """Where SMTP mail goes, as the doctor prints it: host, port, security, user; never the password."""
    security = "STARTTLS" if settings.EMAIL_USE_TLS else "TLS" if settings.EMAIL_USE_SSL else "no TLS"
    user = f" as {settings.EMAIL_HOST_USER}" if settings.EMAIL_HOST_USER else ""
    return f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT} ({security}){user}"


def check_email(ctx: Context) -> Result:
    """The email backend; for SMTP, whether a connection opens (connect, EHLO, STARTTLS and login as
    configured, bounded by ``EMAIL_TIMEOUT`` and the check's timeout), then QUIT: nothing is sent.
    A backend that does not deliver (console, file, memory) is a warning in production."""
    from django.core.mail import get_connection
    from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
    from django.utils.module_loading import import_string

    backend = settings.EMAIL_BACKEND
    if not issubclass(import_string(backend), SMTPBackend):
        if settings.DEBUG:
            return Result("email", OK, f"{backend} (development)")
        return Result("email", WARN, f"{backend}: emails (verification, password reset) are not delivered")
    if not settings.EMAIL_HOST:
        return Result("email", FAIL, "SMTP backend without EMAIL_HOST")
    if settings.EMAIL_USE_TLS and settings.EMAIL_USE_SSL:
        return Result("email", FAIL, "EMAIL_USE_TLS and EMAIL_USE_SSL are both set (one or the other)")
    target = _smtp_target()
    probe = get_connection(backend, fail_silently=False, timeout=min(settings.EMAIL_TIMEOUT, ctx.timeout))
    started = time.monotonic()
    try:
        probe.open()
    except Exception as exc:  # refused, timed out, TLS or login refused: all named, none raised
        if isinstance(exc, smtplib.SMTPResponseException):
            text = exc.smtp_error
            reason = f"{exc.smtp_code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
        else:
            reason = str(exc)
        detail = f"{target}: {type(exc).__name__}: {reason[:200]}"
        if settings.EMAIL_HOST_PASSWORD:  # a server may echo what it was sent: never print the password
            detail = detail.replace(settings.EMAIL_HOST_PASSWORD, "***")
        return Result("email", FAIL, detail)
    finally:
        with contextlib.suppress(Exception):  # QUIT on a broken connection
            probe.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    logged_in = ", logged in" if settings.EMAIL_HOST_USER and settings.EMAIL_HOST_PASSWORD else ""
    return Result("email", OK, f"SMTP {target}: connected{logged_in} in {elapsed_ms:.0f} ms")


def checks_all() -> list[tuple[str, Check]]:
    """Every check, in output order: (name, function)."""
    return [
        ("configuration", check_configuration),
        ("postgresql", check_database),
        *((f"redis:{name}", _redis_check(name)) for name in (*redis_access.connection_names(), "cache")),
        ("broker", check_broker),
        ("migrations", check_migrations),
        ("partitions", check_partitions),
        ("beat", check_beat),
        ("workers", check_workers),
        ("ingestion_lag", check_ingestion_lag),
        ("dead_letters", check_dead_letters),
        ("usage_flush", check_usage_flush),
        ("stripe", check_stripe),
        ("email", check_email),
    ]


def _run(name: str, check: Check, ctx: Context, out: dict[str, list[Result]]) -> None:
    try:
        answer = check(ctx)
        out[name] = [answer] if isinstance(answer, Result) else list(answer)
    except Exception as exc:  # a check that cannot run is a failed check, named with its error
        out[name] = [Result(name, FAIL, f"{type(exc).__name__}: {str(exc)[:200]}")]
    finally:
        connections.close_all()  # this thread's database connections (back to the pool)


def run_checks(
    *, now: datetime | None = None, timeout: float = DEFAULT_TIMEOUT, only: Iterable[str] | None = None
) -> list[Result]:
    """Run the checks (all, or those named in ``only``) side by side; a check that has not answered
    after ``timeout`` seconds fails ("no answer")."""
    ctx = Context(now=now or timezone.now(), timeout=timeout)
    selected = [(name, check) for name, check in checks_all() if only is None or name in set(only)]
    out: dict[str, list[Result]] = {}
    threads = [
        threading.Thread(target=_run, args=(name, check, ctx, out), name=f"doctor-{name}", daemon=True)
        for name, check in selected
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    results: list[Result] = []
    for name, _ in selected:
        results.extend(out.get(name) or [Result(name, FAIL, f"no answer within {timeout:g} s")])
    return results
