"""Shared fixtures. Tests run against the real PostgreSQL (test database) and Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_cache():
    """Every test starts with an empty Redis cache database (the test script points it at db 15)."""
    cache.clear()
    yield


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nobody listens on: a stand-in for a stopped dependency."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
