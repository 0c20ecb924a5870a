"""Driving the stand-in from tests: ``running()`` starts ``python -m tests.stripe_standin`` as a
subprocess and yields a ``StandIn``, a small client of its control API."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import stripe

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET_KEY = "sk_test_candlestack"


class StandInError(RuntimeError):
    """The control API refused a request (its message says why)."""


class StandIn:
    """The control API of a running stand-in (``/_standin/...``), and a stripe client pointed at it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._http = httpx.Client(base_url=base, timeout=10)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, f"/_standin/{path}", json=body)
        if response.status_code >= 400:
            raise StandInError(f"{method} /_standin/{path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self) -> None:
        """Empty state, no fault, real time; requests in flight (a slow fault) are dropped."""
        self._call("POST", "reset")

    def clock(self, now: int | None) -> None:
        """Fix the stand-in clock at ``now`` (epoch seconds), or back to real time with None."""
        self._call("POST", "clock", {"now": now})

    def faults(self, **kw: Any) -> None:
        """``mode`` ok|error|slow|down, ``path_prefix`` (default /v1), ``count``, ``delay`` (slow)."""
        self._call("POST", "faults", kw)

    def requests(self) -> list[dict[str, Any]]:
        """The Stripe requests received: method, path, params, idempotency_key, status, ..."""
        return self._call("GET", "requests")

    def clear_requests(self) -> None:
        self._call("POST", "requests/clear")

    def create_subscription(self, **kw: Any) -> dict[str, Any]:
        return self._call("POST", "subscriptions", kw)

    def update_subscription(self, subscription_id: str, **kw: Any) -> dict[str, Any]:
        return self._call("POST", f"subscriptions/{subscription_id}", kw)

    def create_invoice(self, **kw: Any) -> dict[str, Any]:
        return self._call("POST", "invoices", kw)

    def update_invoice(self, invoice_id: str, **kw: Any) -> dict[str, Any]:
        return self._call("POST", f"invoices/{invoice_id}", kw)

    def complete_checkout(self, session_id: str, **kw: Any) -> dict[str, Any]:
        """The customer paid: ``{"session": ..., "subscription": ... or None}``."""
        return self._call("POST", f"checkout_sessions/{session_id}/complete", kw)

    def expire_checkout(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"checkout_sessions/{session_id}/expire")

    def meter_events(self) -> list[dict[str, Any]]:
        """Every meter event received, canceled ones included (``canceled: true``)."""
        return self._call("GET", "meter_events")

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Stored objects of a kind, oldest first: customers, products, prices, meters,
        checkout_sessions, portal_sessions, subscriptions, invoices."""
        return self._call("GET", f"objects/{kind}")

    def stripe_client(self, *, timeout: float = 5, api_key: str = TEST_SECRET_KEY) -> stripe.StripeClient:
        """A real ``stripe.StripeClient`` talking to this stand-in, without retries."""
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.base},
            http_client=stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True),
            max_network_retries=0,
        )


@contextlib.contextmanager
def running(start_timeout: float = 20) -> Iterator[StandIn]:
    """Start the stand-in on a free port, yield its ``StandIn``, stop it after. It also stops by
    itself if this process dies (its stdin closes). A failed start raises with its stderr."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stripe_standin", "--port", "0", "--exit-on-stdin-eof"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], start_timeout)
            line = proc.stdout.readline().decode().strip() if ready else ""
            if not line.startswith("listening on http://"):
                proc.kill()
                proc.wait(timeout=5)
                stderr.seek(0)
                errors = stderr.read().decode(errors="replace")
                raise RuntimeError(f"the Stripe stand-in did not start (stdout {line!r}):\n{errors}")
            standin = StandIn(line.removeprefix("listening on "))
            try:
                yield standin
            finally:
                standin.close()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
