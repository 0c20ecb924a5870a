"""Fixtures for the doctor tests. The checks run in threads of their own (each bounded in time), so the
data they read must be committed: tests use ``django_db(transaction=True)``."""

from __future__ import annotations

from tests.ingestion_tasks.conftest import start_worker, wait_until  # noqa: F401 - fixtures re-exported
