"""Shared pieces of the HTTP benchmarks: a gunicorn server on loopback and a bounded load generator.

Load comes from a second process: `wrk` when installed (`apt-get install -y wrk`), else a bounded
httpx/asyncio client. Every run is bounded in time and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SETTLE_SECONDS = 2.0
PYTHON = sys.executable

#: Prepended to a measuring snippet: counts Redis round trips (commands sent, pipelines count once).
REDIS_COUNTER = """
import redis.connection
sent = [0]
_orig_send = redis.connection.AbstractConnection.send_packed_command
def _counting(self, command, check_health=True):
    sent[0] += 1
    return _orig_send(self, command, check_health)
redis.connection.AbstractConnection.send_packed_command = _counting
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(code: str, env, *, argv=(), timeout: int = 900) -> str:
    """Run Python code (or ``manage.py`` when code is a list) from the repo root; its stdout."""
    cmd = [PYTHON, *code] if isinstance(code, list) else [PYTHON, "-c", code, *argv]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"failed: {cmd[:3]}\n{out.stdout}\n{out.stderr}")
    return out.stdout


def start_gunicorn(env, *, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    """gunicorn on a free loopback port (gthread when threads > 1, as scripts/run.sh); waits for /healthz."""
    port = free_port()
    worker_class = ["-k", "gthread", "--threads", str(threads), "--keep-alive", "5"] if threads > 1 else []
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "apiplatform.wsgi:application", "-w", str(workers), *worker_class,
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "1024"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return server, base


def wrk(
    url: str, headers: dict[str, str], duration: int, connections: int
) -> tuple[float, float, float, int]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        raw = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        return float(raw.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[raw.group(2)]

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if errors:
        print("   wrk:", errors.group(0))
    return rps, pct("50"), pct("99"), int(bad.group(1)) if bad else 0


async def _pyload(url, headers, duration, connections) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    bad = 0
    deadline = time.perf_counter() + duration

    async def worker(client):
        nonlocal bad
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await client.get(url, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000)
            bad += r.status_code >= 300

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    latencies.sort()
    n = len(latencies)
    return n / duration, latencies[n // 2], latencies[int(n * 0.99) - 1], bad


def load(
    url: str, headers: dict[str, str], duration: int, connections: int
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, non-2xx count) of ``duration`` seconds at ``connections``.

    Waits ``SETTLE_SECONDS`` first: a server still answering the queue of the previous measurement
    (a slow variant's backlog) would otherwise land in this one's tail latency."""
    time.sleep(SETTLE_SECONDS)
    if shutil.which("wrk"):
        return wrk(url, headers, duration, connections)
    return asyncio.run(_pyload(url, headers, duration, connections))


def generator_name() -> str:
    return "wrk" if shutil.which("wrk") else "httpx/asyncio"
