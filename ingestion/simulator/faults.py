"""Fault injection. Request-level faults (forced ones, latency, timeouts, error statuses, truncated
bodies) are decided here per request number; record-level faults (malformed, spiked, stale or missing
records/points) are decided by the endpoints with ``SimState.record_u`` and the kinds below.
Settings: ``config.FaultConfig``."""

from __future__ import annotations

import time

import orjson

from .protocol import RATE_LIMIT_BODY, Reply, flat_error, status_error
from .state import SimState

# kinds of record-level faults (counter offsets of the fault hash)
F_MALFORMED, F_MALFORMED_KIND, F_SPIKE, F_STALE, F_GAP = 1, 2, 3, 4, 5
# kinds of request-level faults (counter offsets of the fault hash)
R_LATENCY, R_TIMEOUT, R_ERROR, R_ERROR_STATUS, R_TRUNCATE = 1, 2, 3, 4, 7
ERROR_MESSAGES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def request_faults(state: SimState, path: str, seq: int) -> None:
    """Raise the fault (a ``Reply``, or ``httpx.ReadTimeout``) request ``seq`` gets, if any."""
    f = state.config.faults
    forced = state.take_forced(path)
    if forced is not None:
        raise_fault(state, forced["kind"], path, forced["retry_after"])
    if f.latency or f.latency_jitter:
        time.sleep(f.latency + f.latency_jitter * state.request_u(seq, R_LATENCY))
    if f.timeout_rate and state.request_u(seq, R_TIMEOUT) < f.timeout_rate:
        raise_fault(state, "timeout", path, None)
    if f.error_rate and state.request_u(seq, R_ERROR) < f.error_rate:
        statuses = f.error_statuses or (500,)
        status = statuses[int(state.request_u(seq, R_ERROR_STATUS) * len(statuses)) % len(statuses)]
        raise_fault(state, status, path, None)


def truncated(state: SimState, body, headers: dict[str, str], path: str, seq: int) -> Reply | None:
    """The 200 answer with its JSON cut in half, if request ``seq`` is one to truncate."""
    f = state.config.faults
    if f.truncate_rate and state.request_u(seq, R_TRUNCATE) < f.truncate_rate:
        raw = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        state.log_fault("truncate", path)
        return Reply(200, None, headers, raw=raw[: max(1, len(raw) // 2)])
    return None


def raise_fault(state: SimState, kind: int | str, path: str, retry_after: int | None) -> None:
    state.log_fault(str(kind), path)
    f = state.config.faults
    if kind == "timeout":
        if f.timeout_mode == "raise":
            import httpx  # only in-process runs raise it; the server never needs httpx

            raise httpx.ReadTimeout("simulated upstream timeout")
        time.sleep(f.timeout_seconds)
        raise Reply(
            504,
            None,
            {"Content-Type": "text/html"},
            raw=b"<html><body>504 Gateway Time-out</body></html>",
        )
    if kind == "truncate":
        raise Reply(200, None, raw=b'[{"id":"bitcoin","symbol":"btc","name":"Bitc')
    if kind == "garbage":
        raise Reply(
            200, None, {"Content-Type": "text/html"}, raw=b"<html><body>Just a moment...</body></html>"
        )
    if kind == "html429":
        raise Reply(
            429,
            None,
            {"Content-Type": "text/html", "retry-after": str(retry_after or 1)},
            raw=b"<html><head><title>429 Too Many Requests</title></head>"
            b"<body>Too Many Requests</body></html>",
        )
    status = int(kind)
    if status == 429:
        state.stats["rate_limited"] += 1
        raise Reply(429, RATE_LIMIT_BODY, {"retry-after": str(retry_after if retry_after is not None else 1)})
    if status in (401, 403):
        raise status_error(status, 10002 if status == 401 else 403, "API Key Missing")
    if status == 404:
        raise flat_error(404, "coin not found")
    if status == 400:
        raise flat_error(400, "invalid vs_currency")
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    raise Reply(
        status,
        {"status": {"error_code": status, "error_message": ERROR_MESSAGES.get(status, "Error")}},
        headers,
    )
