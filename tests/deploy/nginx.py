"""nginx with the shipped server block (deploy/nginx/candlestack.conf.template) on loopback, for the
tests of deploy/nginx. nginx comes from Debian's nginx-light package (scripts/test.sh installs it:
ensure_nginx in scripts/lib.sh)."""

from __future__ import annotations

import contextlib
import os
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port, stop_process, wait_healthy

TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "candlestack.conf.template"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        pytest.fail(
            "nginx is not installed: scripts/test.sh installs it (ensure_nginx in scripts/lib.sh), "
            "or run apt-get install -y nginx-light"
        )
    return found


@contextlib.contextmanager
def nginx_in_front(
    tmp_path: Path, upstream: str, *, stream_upstream: str | None = None, http_extra: str = ""
) -> Iterator[int]:
    """nginx with the shipped server block (deploy/nginx/candlestack.conf.template, rendered the way
    the docs say) on a free loopback port; a minimal top-level nginx.conf around it. ``upstream`` is the
    web process, ``stream_upstream`` the stream server (default: the same address); ``http_extra`` adds
    directives to the http {} block (what an operator's global nginx.conf may hold). Yields the port
    once ``/healthz`` answers 200 through nginx."""
    port = free_port()
    site = string.Template(TEMPLATE.read_text()).safe_substitute(
        CANDLESTACK_LISTEN=f"127.0.0.1:{port}",
        CANDLESTACK_SERVER_NAME="localhost",
        CANDLESTACK_UPSTREAM=upstream.removeprefix("http://"),
        CANDLESTACK_STREAM_UPSTREAM=(stream_upstream or upstream).removeprefix("http://"),
    )
    assert "${" not in site
    (tmp_path / "candlestack.conf").write_text(site)
    for sub in ("body", "proxy"):
        (tmp_path / sub).mkdir()
    user = "user root;" if os.geteuid() == 0 else ""  # worker processes must reach tmp_path
    (tmp_path / "nginx.conf").write_text(
        f"""
        daemon off;
        {user}
        worker_processes 1;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log warn;
        events {{ worker_connections 1024; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            {http_extra}
            include {tmp_path}/candlestack.conf;
        }}
        """
    )
    conf, log = str(tmp_path / "nginx.conf"), str(tmp_path / "error.log")
    command = [nginx_binary(), "-p", str(tmp_path), "-e", log, "-c", conf]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, 20, (tmp_path / "error.log").read_text)
        yield port
    finally:
        stop_process(proc)
