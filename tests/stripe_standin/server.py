"""The HTTP side of the Stripe stand-in: a threaded stdlib server on loopback that routes ``/v1/...``
to the resource handlers (auth, faults, idempotency, request log, expansion, Stripe's error shape),
``/_standin/...`` to the control API, and ``/pay/``, ``/portal/``, ``/invoice/`` to placeholder pages.

A test double, not Stripe: run ``python -m tests.stripe_standin --port 0``."""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, urlsplit

from . import forms
from .control import CONTROL_ROUTES
from .errors import StripeError
from .resources import ROUTES, Ctx
from .state import State, Stored, expand, new_id

API_VERSION = "2026-10-28.endive"  # what stripe 16.1.0 sends; echoed back, not enforced
_ROUTES = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in ROUTES]
_CONTROL = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in CONTROL_ROUTES]
_PAGES = re.compile(r"/(pay|portal|invoice)/([^/]+)(/pdf)?$")
_PAGE_KINDS = {"pay": "checkout_sessions", "portal": "portal_sessions", "invoice": "invoices"}


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = State()
        self.base = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up (timeout) before a slow answer: expected
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: StandInServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and "down" is a plain close

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, *args: Any) -> None:  # quiet: the request log is at /_standin/requests
        pass

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if url.path.startswith("/_standin/"):
            self._control(method, url.path, body)
        elif _PAGES.match(url.path) and method == "GET":
            self._page(url.path)
        else:
            self._stripe(method, url, body)

    # --- Stripe's API ---------------------------------------------------------------------------

    def _stripe(self, method: str, url: SplitResult, body: str) -> None:
        state = self.server.state
        with state.lock:
            generation = state.generation
            fault = state.take_fault(url.path)
        if fault is not None and fault.mode == "slow":
            time.sleep(fault.delay)  # outside the lock: other requests go on meanwhile
        headers: dict[str, str] = {}
        with state.lock:
            if state.generation != generation:
                return  # the state was reset while this request slept: drop it, unanswered
            entry: dict[str, Any] = {
                "method": method,
                "path": url.path,
                "params": None,
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "stripe_version": self.headers.get("Stripe-Version"),
                "status": None,
                "replayed": False,
            }
            state.requests.append(entry)
            if fault is not None and fault.mode == "down":
                self.close_connection = True
                return  # the connection closes without an answer
            if fault is not None and fault.mode == "error":
                status, payload = (
                    500,
                    StripeError(
                        500, "An unknown error occurred (stand-in fault injection).", type_="api_error"
                    ).body(),
                )
            else:
                status, payload = self._answer(method, url, body, entry, headers)
            entry["status"] = status
        self._send(status, payload, headers)

    def _answer(
        self, method: str, url: SplitResult, body: str, entry: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        state = self.server.state
        try:
            self._authenticate()
            params = forms.decode("&".join(part for part in (url.query, body) if part))
            entry["params"] = params
            handler, args = self._route(method, url.path)
            key = entry["idempotency_key"] if method == "POST" else None
            scope = (self.headers.get("Authorization", ""), key or "")
            fingerprint = (method, url.path, json.dumps(params, sort_keys=True))
            if key:
                stored = state.idempotency.get(scope)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        raise StripeError(
                            400,
                            "Keys for idempotent requests can only be used with the same parameters "
                            "they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            type_="idempotency_error",
                        )
                    headers["Idempotent-Replayed"] = "true"
                    entry["replayed"] = True
                    return stored.status, stored.body
            result = handler(Ctx(state, params, self.server.base), *args)
            rendered = self._render(result)
            expand(state, rendered, forms.sequence(params, "expand"))
            if key:
                state.idempotency[scope] = Stored(fingerprint, 200, rendered)
            return 200, rendered
        except StripeError as error:
            return error.status, error.body()
        except Exception as exc:  # a stand-in bug: say so in the answer (and on stderr), not a hang
            traceback.print_exc()
            return 500, StripeError(500, f"Stripe stand-in bug: {exc!r}", type_="api_error").body()

    def _authenticate(self) -> None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not re.fullmatch(r"Bearer sk_\S+", auth):
            raise StripeError(401, "Invalid API Key provided: " + auth.removeprefix("Bearer ")[:8] + "***")

    @staticmethod
    def _route(method: str, path: str) -> tuple[Any, Sequence[str]]:
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                return handler, match.groups()
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
            "help at https://support.stripe.com/.",
        )

    def _render(self, result: dict[str, Any]) -> dict[str, Any]:
        public = self.server.state.public
        if result.get("object") == "list":
            return {**result, "data": [public(item) for item in result["data"]]}
        return public(result)

    # --- control API and pages ------------------------------------------------------------------

    def _control(self, method: str, path: str, body: str) -> None:
        state = self.server.state
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send(400, StripeError(400, "the body must be a JSON object").body())
            return
        for route_method, pattern, handler in _CONTROL:
            match = pattern.match(path)
            if match and route_method == method:
                try:
                    with state.lock:
                        answer = handler(state, payload, self.server.base, *match.groups())
                        text = json.dumps(answer)  # serialised under the lock: the state is not copied
                    self._send(200, text)
                except StripeError as error:
                    self._send(error.status, error.body())
                except Exception as exc:  # malformed control input or a stand-in bug
                    traceback.print_exc()
                    error = StripeError(500, f"control API failed: {exc!r}", type_="api_error")
                    self._send(500, error.body())
                return
        self._send(404, StripeError(404, f"No control route {method} {path}").body())

    def _page(self, path: str) -> None:
        """Placeholder pages for the URLs the API hands out (Checkout, portal, hosted invoice)."""
        match = _PAGES.match(path)
        assert match is not None
        kind, object_id = _PAGE_KINDS[match.group(1)], match.group(2)
        with self.server.state.lock:
            obj = self.server.state.objects[kind].get(object_id)
            status = obj.get("status") if obj else None
        text = f"Stripe stand-in (a test double): {kind} {object_id}" + (f" ({status})" if status else "")
        data = f"<!doctype html><title>Stripe stand-in</title><p>{html.escape(text)}</p>".encode()
        self.send_response(200 if obj else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", new_id("req_", 14))
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or API_VERSION)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.stripe_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (the parent test process died)",
    )
    args = parser.parse_args(argv)
    server = StandInServer(args.port)
    print(f"listening on {server.base}", flush=True)
    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            sys.stdin.read()
            server.shutdown()

        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
