"""Signatures of webhook deliveries: Stripe's scheme with our header name (docs/alerts.md).

``Candlestack-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``

The receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes with the
endpoint's secret, compares in constant time, and refuses timestamps too far from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Candlestack-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105  # a prefix, not a secret


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret=secret, timestamp=t, body=body)}"


def verify(*, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """The receiver's check (used by our tests; docs/alerts.md shows the same in Python and JS)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = signature(secret=secret, timestamp=t, body=body)
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))
