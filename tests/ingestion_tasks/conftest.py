"""Fixtures for the task tests: a real Celery worker subprocess against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.conftest import test_database_url

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_QUEUES = "default,ingestion,backfill"

# Starts a worker through app.worker_main so the test can also set kombu's restore throttle
# (not a project setting): the effective restore sweep period is interval x throttle.
_WORKER_BOOT = (
    "import sys\n"
    "from apiplatform.celery import app\n"
    "opts = dict(app.conf.broker_transport_options or {})\n"
    "opts['unacked_restore_throttle'] = int(sys.argv[1])\n"
    "app.conf.broker_transport_options = opts\n"
    "app.worker_main(sys.argv[2:])\n"
)


class Worker:
    """One `celery -A apiplatform worker` subprocess with its own log file."""

    def __init__(
        self,
        log_dir: Path,
        *,
        pool: str = "solo",
        env: dict[str, str] | None = None,
        throttle=1,
        queues: str = WORKER_QUEUES,
    ):
        self.log_path = log_dir / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.name = f"h6test-{uuid.uuid4().hex[:8]}@%h"
        cmd = [
            sys.executable,
            "-c",
            _WORKER_BOOT,
            str(throttle),
            "worker",
            "-P",
            pool,
            "-c",
            "1",
            "-Q",
            queues,
            "-I",
            "tests.ingestion_tasks.worker_tasks",
            "-n",
            self.name,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        full_env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DB_POOL_MIN_SIZE": "1",
            "DB_POOL_MAX_SIZE": "2",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (its process group): a machine loss, nothing gets to clean up."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def purge_broker() -> None:
    """Empty this test run's own broker database (never a platform's: see start_worker)."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def _broker_is_dedicated() -> bool:
    """Worker tests flush the broker database: refuse db 0, the platform's default broker."""
    conn = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return conn.connection_pool.connection_kwargs.get("db", 0) != 0


@pytest.fixture
def start_worker(django_db_setup, django_db_blocker, tmp_path):
    """Factory: start_worker(pool=..., env=...) -> a ready Worker; all are stopped at teardown."""
    if not _broker_is_dedicated():
        pytest.skip("worker tests need their own broker database: CELERY_BROKER_URL=redis://.../<n>, n > 0")
    workers: list[Worker] = []

    def start(**kwargs) -> Worker:
        with django_db_blocker.unblock():
            worker = Worker(tmp_path, **kwargs)
        workers.append(worker)
        worker.wait_ready()
        return worker

    purge_broker()
    yield start
    for worker in workers:
        worker.stop()
    purge_broker()


def wait_until(predicate, *, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
