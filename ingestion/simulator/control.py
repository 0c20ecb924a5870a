"""The simulator-only control API under ``/_sim/`` (not part of CoinGecko):

- ``GET /_sim/state``: config, clock, faults and counters
- ``GET|POST /_sim/clock``: read, or set ``{"now", "speed", "advance"}``
- ``GET|POST /_sim/faults``: read, or change fault settings (``FaultConfig`` fields)
- ``POST /_sim/force``: ``{"kind", "count", "retry_after", "paths"}`` (see ``SimState.force``)
- ``POST /_sim/keys/revoke``: ``{"key", "status"}``
- ``GET /_sim/truth/tick?coin=ID&t=EPOCH|ISO``: the ground-truth tick in force at ``t``
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs

import orjson

from .core import iso_ms, to_ms
from .protocol import Reply, flat_error
from .state import SimState


@runtime_checkable
class SettableClock(Protocol):
    """A clock the control API can move (``clock.SimClock``, ``clock.ManualClock``)."""

    def set(self, now: float | datetime | None = None, speed: float | None = None) -> None: ...

    def advance(self, seconds: float) -> None: ...


def control(state: SimState, environ: dict, path: str, query: str) -> Reply:
    method = environ.get("REQUEST_METHOD", "GET")
    body: dict = {}
    if method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise flat_error(400, "body must be JSON") from None
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    if path == "/_sim/state":
        return Reply(200, state.state())
    if path == "/_sim/clock":
        if method == "POST":
            clock = state.clock
            if not isinstance(clock, SettableClock):
                raise flat_error(400, "this simulator's clock cannot be set")
            now = body.get("now")
            if isinstance(now, str):
                now = datetime.fromisoformat(now.replace("Z", "+00:00"))
            clock.set(now=now, speed=body.get("speed"))
            if body.get("advance"):
                clock.advance(float(body["advance"]))
        return Reply(200, {"now": state.now_ms() / 1000, "now_iso": iso_ms(state.now_ms())})
    if path == "/_sim/faults":
        if method == "POST":
            try:
                state.set_faults(**body)
            except (ValueError, TypeError) as exc:
                raise flat_error(400, str(exc)) from None
        return Reply(200, asdict(state.config.faults))
    if path == "/_sim/force" and method == "POST":
        state.force(
            body["kind"],
            int(body.get("count", 1)),
            retry_after=body.get("retry_after"),
            paths=body.get("paths"),
        )
        return Reply(200, {"queued": state.forced_count()})
    if path == "/_sim/keys/revoke" and method == "POST":
        state.revoke_key(body["key"], int(body.get("status", 401)))
        return Reply(200, {"revoked": True})
    if path == "/_sim/truth/tick":
        raw_t = params.get("t")
        try:
            t = to_ms(raw_t) / 1000 if raw_t else state.now_ms() / 1000
        except ValueError:
            raise flat_error(400, "t: epoch seconds or an ISO 8601 time") from None
        coin = params.get("coin", "")
        tick = state.tick_at_or_before(coin, t) if coin in state.universe.index else None
        if tick is None:
            raise flat_error(404, "no tick")
        return Reply(
            200,
            {
                "coin_id": tick.coin_id,
                "index": tick.index,
                "time_ms": tick.time_ms,
                "price": tick.price,
                "market_cap": tick.market_cap,
                "total_volume": tick.total_volume,
            },
        )
    raise flat_error(404, "Not Found")
