"""deploy/nginx in front of the stream server: GET /v1/stream passes events through at once and
uncompressed, passes a non-reading client's back-pressure on to the stream server, and one address
cannot hold more streams than the per-address connection limit (nginx answers 429, problem+json).

The upstream is a tiny SSE server (HTTP/1.1, chunked, on loopback, as uvicorn answers) that sends one
event and then waits for the test's permission before it sends the next and ends the response: an
event read through nginx while the upstream still waits proves nothing held it back. nginx runs with
``gzip on`` for text/event-stream in its http block (what an operator's global nginx.conf may hold):
the API location (``/``, buffered) then holds the same event back, as a control, unless the upstream
sends ``X-Accel-Buffering: no`` (as the stream view does), which nginx honours.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.deploy.nginx import TEMPLATE, nginx_in_front

#: The per-address limits the template ships (documented there and in docs/operations.md).
STREAM_LIMIT = 100
API_LIMIT = 32


class SSEUpstream(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # nginx opens the streams at once (the default backlog is 5)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SSEHandler)
        self.release = threading.Event()  # the test lets the streams send their second event and end
        self.flooded = threading.Event()  # a flood stream wrote all its events
        self.open_streams = 0
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # a client (nginx) that closed a stream is expected here; the tests assert what matters

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class SSEHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked
    server: SSEUpstream

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    def do_GET(self):
        if self.path == "/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        with self.server.lock:  # counted before the client can see the answer begin
            self.server.open_streams += 1
        try:
            query = parse_qs(urlsplit(self.path).query)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            if query.get("accel") == ["no"]:
                self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            if "flood" in query:  # as many events as fit in ``flood`` MiB, as fast as the socket takes them
                event = b"event: price\ndata: " + b"x" * 65_000 + b"\n\n"
                for _ in range(int(query["flood"][0]) * 2**20 // len(event)):
                    self.chunk(event)
                self.server.flooded.set()
                return
            self.chunk(b'id: 1\nevent: price\ndata: {"coin":"bitcoin","price":1}\n\n')
            self.server.release.wait(30)
            self.chunk(b"id: 2\nevent: end\ndata: {}\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            with self.server.lock:
                self.server.open_streams -= 1

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


@pytest.fixture
def sse_upstream() -> Iterator[SSEUpstream]:
    server = SSEUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def first_event_before_the_end(url: str, upstream: SSEUpstream, timeout: float = 3.0) -> bool:
    """Whether the first event arrives (within ``timeout``) while the upstream has not ended."""
    upstream.release.clear()
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=timeout)) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    assert not upstream.release.is_set()
                    return True
    except httpx.ReadTimeout:
        return False
    finally:
        upstream.release.set()
    raise AssertionError("stream ended without an event")


def test_the_template_routes_the_stream_unbuffered_with_a_connection_limit():
    site = TEMPLATE.read_text()
    stream = site[site.index("location = /v1/stream {") :]
    for directive in ("proxy_pass http://candlestack_stream;", "proxy_buffering off;", "gzip off;",
                      f"limit_conn candlestack_stream {STREAM_LIMIT};"):  # fmt: skip
        assert directive in stream
    assert f"limit_conn candlestack_api {API_LIMIT};" in site and "limit_conn_status 429;" in site
    assert "keepalive 32;" in site and "proxy_http_version 1.1;" in site


def test_stream_events_pass_through_unbuffered_and_uncompressed(tmp_path, sse_upstream):
    extra = "gzip on; gzip_types text/event-stream; gzip_min_length 1;"  # an operator's global gzip
    with nginx_in_front(
        tmp_path, sse_upstream.url, stream_upstream=sse_upstream.url, http_extra=extra
    ) as port:
        base = f"http://127.0.0.1:{port}"
        assert first_event_before_the_end(f"{base}/v1/stream?ids=bitcoin", sse_upstream)
        # Control: the API location (buffered, gzip on) holds the same event back until the end ...
        assert not first_event_before_the_end(f"{base}/v1/events", sse_upstream)
        # ... unless the upstream says X-Accel-Buffering: no (as the stream view does): respected.
        assert first_event_before_the_end(f"{base}/v1/events?accel=no", sse_upstream)

        sse_upstream.release.set()
        response = httpx.get(f"{base}/v1/stream?ids=bitcoin", headers={"Accept-Encoding": "gzip"}, timeout=10)
        assert response.status_code == 200
        assert "content-encoding" not in response.headers  # text/event-stream never compressed
        assert response.text.count("event:") == 2


FLOOD_MIB = 256  # far more than the socket buffers on the way can hold (a few MiB each on loopback)


def test_a_client_that_does_not_read_holds_back_the_stream_server_not_nginx(tmp_path, sse_upstream):
    """Unbuffered, nginx passes back-pressure on: a client that stops reading stops the stream server's
    writes (which is how the server finds slow clients: STREAM_WRITE_TIMEOUT, docs/stream.md). A
    buffering proxy would instead take the whole flood into memory and temporary files."""
    with nginx_in_front(tmp_path, sse_upstream.url, stream_upstream=sse_upstream.url) as port:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        with sock:
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET /v1/stream?flood={FLOOD_MIB} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
            assert not sse_upstream.flooded.wait(5)  # the server's writes are blocked ...
        proxy_spool = sum(f.stat().st_size for f in (tmp_path / "proxy").rglob("*") if f.is_file())
        assert proxy_spool == 0  # ... and nothing went to nginx's temporary files


def open_stream(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /v1/stream?ids=bitcoin HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_one_address_cannot_hold_more_streams_than_the_limit(tmp_path, sse_upstream):
    with (
        nginx_in_front(tmp_path, sse_upstream.url, stream_upstream=sse_upstream.url) as port,
        contextlib.ExitStack() as stack,
    ):
        streams = [stack.enter_context(contextlib.closing(open_stream(port))) for _ in range(STREAM_LIMIT)]
        for sock in streams:
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        assert sse_upstream.open_streams == STREAM_LIMIT

        refused = httpx.get(f"http://127.0.0.1:{port}/v1/stream?ids=bitcoin", timeout=10)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["retry-after"] == "1"
        problem = json.loads(refused.text)
        assert problem["status"] == 429 and problem["type"].endswith("/problems/rate-limited")
        assert problem["request_id"] == refused.headers["x-request-id"]
        assert sse_upstream.open_streams == STREAM_LIMIT  # the refused one never reached the upstream

        # The API has a zone of its own: the same address still gets answers there.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200

        # A stream closed gives its place back.
        streams.pop().close()
        sock = open_stream(port)
        stack.callback(sock.close)
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
