"""Revocation is seen by a second, separately started web process within one second.

The test starts gunicorn (one worker, its own Python process) on a free loopback port, pointed at
this test database and this Redis database, serving the project plus one trivial public endpoint
(tests/accounts/public_urls.py). The key is revoked here, in the test process; the other process
learns it only through Redis once its process-local entry (TTL 1 s) expires.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from accounts import services
from accounts.models import Organization

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def second_web_process(transactional_db, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.accounts.public_settings",
        "DATABASE_URL": _test_database_url(),  # the *test* database this test writes to
        "REDIS_URL": settings.REDIS_URL,
        "DEBUG": "1",
        "DB_POOL_MAX_SIZE": "2",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "apiplatform.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "second web process did not start:\n" + (tmp_path / "gunicorn.log").read_text()
                )
            time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def test_revoked_key_is_rejected_by_other_process_within_a_second(second_web_process):
    base, other_pid = second_web_process
    assert other_pid != os.getpid()
    organization = services.organization_create(name="Cross Process")
    api_key, full = services.api_key_create(organization=organization, name="k")
    headers = {"Authorization": f"Bearer {full}"}
    with httpx.Client(base_url=base, timeout=5) as client:
        for _ in range(3):  # warm the other process's local cache
            warm = client.get("/v1/test/whoami", headers=headers)
            assert warm.status_code == 200, warm.text
            assert warm.json()["organization_slug"] == organization.slug
        services.api_key_revoke(api_key=api_key)  # commits here, publishes to Redis
        revoked_at = time.monotonic()
        ttl = settings.ACCOUNTS["KEY_LOCAL_CACHE_TTL"]
        time.sleep(ttl)  # the other process's local entry has expired by now at the latest
        response = client.get("/v1/test/whoami", headers=headers)
        seen_after = time.monotonic() - revoked_at
    assert response.status_code == 401, response.text
    assert response.json()["type"].endswith("/api-key-revoked")
    assert "WWW-Authenticate" in response.headers
    assert seen_after < ttl + 0.5
    assert Organization.objects.filter(pk=organization.pk).exists()
