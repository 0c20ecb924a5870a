"""A real gunicorn (deploy/gunicorn.conf.py) with 2 workers in multiprocess mode: a scrape, served by
either worker, adds up what every worker counted, also after a worker died."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from apiplatform import problems
from tests.conftest import web_process
from tests.metrics.conftest import TOKEN, samples, value

pytestmark = pytest.mark.django_db(transaction=True)

ROUTE = "/problems/<slug:slug>"


def _pids(directory: Path) -> set[int]:
    """Worker pids that wrote counters (prometheus-client names its files ``counter_<pid>.db``)."""
    return {int(m.group(1)) for f in directory.iterdir() if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))}


def _scrape(base: str) -> dict:
    response = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def test_a_scrape_adds_up_every_workers_counts(tmp_path: Path):
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"left over from an earlier run")  # on_starting removes it
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "GUNICORN_CMD_ARGS": "--config deploy/gunicorn.conf.py",
        "METRICS_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    slugs = sorted(problems.registered())
    with web_process(tmp_path, settings_module="apiplatform.settings", workers=2, env=env) as (base, proc):
        sent = 0

        def hit(i: int) -> int:
            with httpx.Client(timeout=10) as client:  # a new connection each time: either worker answers
                return client.get(f"{base}/problems/{slugs[i % len(slugs)]}").status_code

        with ThreadPoolExecutor(8) as pool:
            while len(_pids(directory)) < 2 and sent < 400:  # until both workers served some
                statuses = list(pool.map(hit, range(sent, sent + 40)))
                assert set(statuses) == {200}
                sent += 40
        workers = _pids(directory)
        assert len(workers) == 2 and 1 not in workers

        labels = {"route": ROUTE, "method": "GET", "status_class": "2xx"}
        scraped = _scrape(base)
        assert value(scraped, "candlestack_http_requests_total", **labels) == sent
        assert value(scraped, "candlestack_http_request_duration_seconds_count", **labels) == sent
        for slug in slugs:  # the raw paths never become labels
            assert not any(f"/problems/{slug}" in str(key) for key in scraped)

        # a worker dies (child_exit marks it dead); its counts stay in the total
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                scraped = _scrape(base)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert value(scraped, "candlestack_http_requests_total", **labels) == sent
        assert proc.poll() is None
