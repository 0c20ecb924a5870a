"""Workers alive per queue: a real Celery worker subprocess answers the doctor's broadcast; a queue
nobody consumes, and a stopped worker, fail by name."""

from __future__ import annotations

import pytest

from apiplatform.ops import doctor

pytestmark = pytest.mark.django_db(transaction=True)


def workers() -> dict[str, doctor.Result]:
    return {r.check: r for r in doctor.run_checks(only=["workers"])}


def test_a_queue_without_worker_and_a_stopped_worker_are_named(start_worker):
    worker = start_worker(queues="default,ingestion")  # nobody consumes backfill
    results = workers()
    assert results["workers:default"].status == doctor.OK
    assert worker.name.split("@")[0] in results["workers:default"].detail
    assert results["workers:ingestion"].status == doctor.OK
    assert results["workers:backfill"].status == doctor.FAIL
    assert results["workers:backfill"].detail == "no worker consumes this queue"

    worker.stop()
    assert {name: r.status for name, r in workers().items()} == {
        "workers:default": doctor.FAIL,
        "workers:ingestion": doctor.FAIL,
        "workers:backfill": doctor.FAIL,
    }


def test_workers_on_every_queue_are_ok(start_worker):
    start_worker()
    assert all(r.status == doctor.OK for r in workers().values())
