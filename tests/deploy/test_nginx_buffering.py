"""deploy/nginx in front of gunicorn: slow clients cost nginx a connection each, never a worker.

gunicorn's sync workers serve one connection each from its first byte to its last, so a few clients
that send slowly (or never finish) hold every worker. With the shipped nginx configuration in front,
50 such clients leave a normal request's latency where it was: its p99 with them is compared with
its p99 measured just before, in the same test, with a generous factor (no absolute numbers). As a
control, the same slow clients aimed at gunicorn directly stall it.

nginx comes from Debian's nginx-light package (scripts/test.sh installs it: ensure_nginx in
scripts/lib.sh). Everything runs on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import web_process
from tests.deploy.nginx import nginx_in_front

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_CLIENTS = 50
SAMPLES = 200
FACTOR = 20  # generous: loopback latencies are small and the machine is shared


@contextlib.contextmanager
def slow_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that start a request and never finish it: half stop in the middle of
    the header, half send a full header announcing a body and only part of it."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            else:
                sock.sendall(
                    b"POST /v1/account/login HTTP/1.1\r\nHost: localhost\r\n"
                    b'Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n{"email": "'
                )
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def p99(url: str, samples: int = SAMPLES) -> float:
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(samples):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
    return statistics.quantiles(times, n=100)[98]


def test_slow_clients_do_not_delay_a_normal_request_behind_nginx(tmp_path):
    with web_process(tmp_path, settings_module="apiplatform.settings", workers=2) as (upstream, _):
        with nginx_in_front(tmp_path, upstream) as port:
            url = f"http://127.0.0.1:{port}/healthz"
            p99(url, 50)  # warm up both workers and nginx
            quiet = p99(url)
            with slow_clients(port, SLOW_CLIENTS) as socks:
                loaded = p99(url)
                # the slow clients are still there, held by nginx and unanswered
                for sock in socks:
                    sock.setblocking(False)
                    with pytest.raises(BlockingIOError):
                        sock.recv(1)
            assert loaded <= FACTOR * quiet, (loaded, quiet)

        # Control: the same clients aimed at gunicorn itself take both workers, and a normal
        # request gets no answer in far more than the time the test above allowed.
        with (
            slow_clients(int(upstream.rsplit(":", 1)[1]), SLOW_CLIENTS),
            pytest.raises(httpx.TimeoutException),
        ):
            httpx.get(f"{upstream}/healthz", timeout=max(2.0, 10 * FACTOR * quiet))
