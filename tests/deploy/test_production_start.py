"""The production start-up path: static files collected before the web process serves (or no start).

In production mode WhiteNoise serves static files through collectstatic's manifest; without it the
admin's login page and the API docs answer 500. scripts/serve.sh collects them and starts gunicorn;
a web process started without them refuses to start, naming the fix."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO_ROOT, free_port, run_python, stop_process, test_database_url, wait_healthy

pytestmark = pytest.mark.django_db(transaction=True)


def production_env(static_root, **extra) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "apiplatform.settings",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALERTS_SECRET_KEYS": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback in this test
        "STATIC_ROOT": str(static_root),
        "DATABASE_URL": test_database_url(),
        "DB_POOL_MAX_SIZE": "2",
        **extra,
    }


def test_web_process_without_collected_static_files_refuses_to_start(tmp_path):
    result = run_python(
        "import apiplatform.wsgi",
        {k: v for k, v in production_env(tmp_path / "empty").items() if os.environ.get(k) != v},
    )
    assert result.returncode != 0
    assert "Static files are not collected" in result.stderr
    assert "collectstatic" in result.stderr


def test_gunicorn_started_without_collected_static_files_exits_with_the_reason(tmp_path):
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "apiplatform.wsgi:application", "-w", "1",
             "-b", f"127.0.0.1:{free_port()}"],
            cwd=REPO_ROOT, env=production_env(tmp_path / "empty"), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            code = proc.wait(timeout=60)  # today it would serve (and answer 500 on the admin)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert code != 0
    assert "Static files are not collected" in log.read_text()


def test_serve_script_collects_static_files_so_admin_and_docs_pages_load(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = production_env(tmp_path / "static", WEB_BIND=f"127.0.0.1:{port}", WEB_WORKERS="1")
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(REPO_ROOT / "scripts" / "serve.sh")],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_healthy(f"{base}/healthz", proc, 180, log.read_text)  # collectstatic compresses first
            assert (tmp_path / "static" / "staticfiles.json").is_file()
            schema = httpx.get(f"{base}/v1/schema/?format=json", timeout=10)
            assert schema.status_code == 200 and schema.headers["ETag"]
            for page in ("/admin/login/", "/v1/docs/", "/v1/redoc/"):
                response = httpx.get(base + page, timeout=10)
                assert response.status_code == 200, (page, response.text[:500])
                for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', response.text):
                    assert httpx.get(base + asset, timeout=10).status_code == 200, asset
        finally:
            stop_process(proc, timeout=20)
