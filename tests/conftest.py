"""Shared fixtures. Tests run against the real PostgreSQL (test database) and Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent

# The local Stripe stand-in (a process of its own, reached by the real stripe library): the
# ``stripe_standin`` and ``stripe_env`` fixtures.
pytest_plugins = ["tests.stripe_standin.fixtures"]


def reset_process_state() -> None:
    """Forget what this process keeps between requests (as a freshly started web process would):
    the API-key cache and failure memo, the gateway's Redis client and fallback state, the coin-id memo."""
    from accounts import failures, keycache
    from apiplatform import apidocs, redis_access
    from billing import gate
    from marketdata import selectors

    redis_access.reset_all()
    gate.reset()
    keycache.clear_local_cache()
    failures.clear()
    selectors.coin_memo_clear()
    apidocs.clear()


@pytest.fixture(autouse=True)
def _clean_state():
    """Every test starts with an empty Redis cache database (the test script points it at db 15)
    and no process-local state left by an earlier test."""
    cache.clear()
    reset_process_state()
    yield
    reset_process_state()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nobody listens on: a stand-in for a stopped dependency."""
    return free_port()


def production_environment() -> dict[str, str | None]:
    """Environment variables of a production-mode start (DEBUG=0) with every required secret set and
    strong (for ``run_python``; None removes a variable)."""
    return {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALERTS_SECRET_KEYS": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "api.example.com",
        "DJANGO_SETTINGS_MODULE": "apiplatform.settings",
    }


def test_database_url() -> str:
    """DATABASE_URL of the test database pytest-django created, for subprocesses (web, workers).
    The data they must see has to be committed: use ``django_db(transaction=True)``."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float, why: Callable[[], str]) -> None:
    """Wait until ``url`` answers 200; fail with ``why()`` (e.g. the server's log) if ``proc`` exits or
    ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered:\n{why()}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate ``proc``; kill it if it has not ended within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def served_process(
    name: str, args: list[str], log_dir: Path, *, env: dict[str, str], startup_seconds: float = 30
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m <args> --port``-style server ``name`` on a free loopback port (``args`` may use
    ``{port}``), against the test database with ``env`` on top; yields its base URL and process once
    ``/healthz`` answers (within ``startup_seconds``), stops it after."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": test_database_url(), "DEBUG": "1", **env}
    log_path = log_dir / f"{name}-{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *(a.format(port=port) for a in args)],
            cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(
                f"{base}/healthz",
                proc,
                startup_seconds,
                lambda: f"{name} did not start:\n" + log_path.read_text(),
            )
            yield base, proc
        finally:
            stop_process(proc)


@contextlib.contextmanager
def web_process(
    log_dir: Path, *, settings_module: str, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real gunicorn (``workers`` sync workers) on a free loopback port against the test database
    and this Redis; yields its base URL and process once ``/healthz`` answers, stops it after."""
    with served_process(
        "gunicorn",
        ["gunicorn", "apiplatform.wsgi:application", "-w", str(workers), "-b", "127.0.0.1:{port}"],
        log_dir,
        env={"DJANGO_SETTINGS_MODULE": settings_module, "DB_POOL_MAX_SIZE": "2", **(env or {})},
    ) as served:
        yield served


def run_python(
    code: str, env_overrides: dict[str, str | None], timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter from the repo root with a modified environment."""
    env = {**os.environ}
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_manage(args: list[str], env_overrides: dict[str, str | None], timeout: float = 120):
    code = f"import sys; sys.argv = ['manage.py', *{args!r}]; import manage; manage.main()"
    return run_python(code, env_overrides, timeout=timeout)


def simulator_client(sim, *, clock, retry, rate_limit_per_min: int = 1_000_000, prefix: str | None = None):
    """A real CoinGeckoClient talking to an in-process simulator (no network), with Redis keys of
    its own (budget, metrics, key state under ``prefix``; clients sharing a prefix share a budget)
    and retries that do not sleep (time is simulated)."""
    from ingestion.coingecko import CoinGeckoClient

    prefix = prefix or f"test:{uuid.uuid4().hex[:8]}"
    client = CoinGeckoClient(
        base_url="http://sim/api/v3",
        api_keys=["k1"],
        transport=httpx.WSGITransport(app=sim),
        redis=redis.Redis.from_url(settings.REDIS_URL),
        budget_key=f"{prefix}:budget",
        rate_limit_per_min=rate_limit_per_min,
        clock=clock,
        sleep=lambda s: None,
        retry=retry,
    )
    client.metrics.key = f"{prefix}:metrics"
    client.keys.redis_key = f"{prefix}:keys"
    return client
