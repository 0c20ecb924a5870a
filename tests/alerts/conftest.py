"""Fixtures of the alerts tests: organizations and JWT clients (accounts' fixtures), coins with
prices and candles written through marketdata's write path, and a real webhook receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marketdata import services as market
from tests.accounts.conftest import (  # noqa: F401  # fixtures
    _fast_password_hashing,
    jwt_client,
    make_member,
    make_org,
    make_user,
    owner_of,
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers with the next scripted reply (status,
    headers, body), then with the last one again."""

    url: str
    received: list[Received] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=lambda: [(200, {}, b"ok")])

    def reply(self, *replies: tuple[int, dict[str, str], bytes] | int) -> None:
        self.replies = [r if isinstance(r, tuple) else (r, {}, f"status {r}".encode()) for r in replies]


def _start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                status, headers, reply = (
                    receiver.replies.pop(0) if len(receiver.replies) > 1 else receiver.replies[0]
                )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/candlestack"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = _start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    rec, server = _start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def loopback_allowed(settings):
    """Development mode: webhooks may go to http:// on loopback (the test's receiver)."""
    settings.ALERTS_WEBHOOK_ALLOW_LOOPBACK = True


@pytest.fixture
def eager(monkeypatch):
    """Tasks queued by the code under test run in the test's process (through Celery: the task
    base's retry and dead-letter handling included)."""
    from apiplatform.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


@pytest.fixture
def coin(db) -> int:
    ids = market.coins_upsert(coins=[market.CoinIn("bitcoin", "btc", "Bitcoin")])
    return ids["bitcoin"]


def set_price(coin_id: int, price: float, at: datetime | None = None) -> None:
    at = at or datetime.now(UTC)
    market.snapshots_upsert(rows=[market.SnapshotIn(coin_id, price, None, 1, None, None, None, None, at, at)])


def write_closes(coin_id: int, timeframe: str, start: datetime, closes: list[float]) -> None:
    """Closed candles of ``timeframe`` from ``start`` with these closes (open = previous close)."""
    step = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}[timeframe]
    rows = []
    previous = closes[0]
    for i, close in enumerate(closes):
        rows.append(
            market.CandleRow(
                coin_id,
                timeframe,
                start + i * step,
                previous,
                max(previous, close),
                min(previous, close),
                close,
                closed=True,
            )
        )
        previous = close
    market.candles_upsert(rows=rows, source="test")


def payload(received: Received) -> dict:
    return json.loads(received.body)
