"""Serving the simulator over real HTTP: a threading WSGI server, in the foreground or a thread."""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger(__name__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler serves one request per connection; this one keeps HTTP/1.1 connections
    alive (every answer carries Content-Length), so clients really reuse connections."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds

    def handle(self):
        while True:
            try:
                self.raw_requestline = self.rfile.readline(65537)
            except (TimeoutError, ConnectionError):
                return
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.parse_request():
                return
            handler = ServerHandler(
                self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
            )
            handler.request_handler = self
            handler.run(self.server.get_app())
            if self.close_connection:
                return

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        logger.debug("%s - %s", self.address_string(), format % args)


def make_http_server(app, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    return make_server(host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)


class SimulatorServer:
    """Run a WSGI app (a ``Simulator``) on a loopback port in a background thread.

    >>> with SimulatorServer(sim) as server:
    ...     httpx.get(server.url + "/api/v3/ping", headers=...)
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.httpd = make_http_server(app, host, port)
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Root URL of the API, like ``https://pro-api.coingecko.com/api/v3``."""
        return f"http://{self.host}:{self.port}/api/v3"

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="coingecko-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
