"""Real processes reaching the Stripe stand-in: the settings they need, and a platform of a Celery
worker and a gunicorn with the catalogue synced (for end-to-end tests of billing and the portal)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

from django.core.management import call_command

from tests.conftest import web_process
from tests.ingestion_tasks.conftest import Worker, purge_broker
from tests.stripe_standin.client import TEST_SECRET_KEY, StandIn
from tests.stripe_standin.fixtures import TEST_WEBHOOK_SECRET


def stripe_process_env(standin: StandIn) -> dict[str, str]:
    """The environment a web or worker process needs to reach the stand-in."""
    return {
        "STRIPE_API_BASE": standin.base,
        "STRIPE_SECRET_KEY": TEST_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
    }


@contextlib.contextmanager
def platform_with_stripe(
    standin: StandIn, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Worker]]:
    """``manage.py stripe_sync``, then a Celery worker and a gunicorn on the test database, both
    reaching the stand-in (plus ``env``); yields (the web's base URL, the worker). The broker is
    purged before and after."""
    call_command("stripe_sync", stdout=io.StringIO())
    full_env = {**stripe_process_env(standin), **(env or {})}
    purge_broker()
    worker = Worker(log_dir, env=full_env)
    try:
        worker.wait_ready()
        with web_process(log_dir, settings_module="apiplatform.settings", env=full_env) as (base, _proc):
            yield base, worker
    finally:
        worker.stop()
        purge_broker()
