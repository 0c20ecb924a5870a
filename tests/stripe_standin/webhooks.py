"""Webhook payloads as Stripe sends them, for tests of the webhook endpoint: an event envelope and
its ``Stripe-Signature`` header (``t=<timestamp>,v1=<HMAC-SHA256 hex of "<t>.<payload>">``)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from .server import API_VERSION
from .state import new_id


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send with ``payload`` signed by ``secret``."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


def event(
    type_: str,
    obj: dict[str, Any],
    *,
    id: str | None = None,  # noqa: A002 - the envelope's field name, as Stripe calls it
    created: int | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An event envelope like Stripe's (``evt_...``) carrying ``obj`` as ``data.object``; serialise it
    with ``json.dumps(...).encode()`` and sign those bytes with ``signature_header``."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": id or new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }
