"""The control API under ``/_standin/`` (JSON, no auth; not Stripe's): tests reset the state, set the
clock, inject faults, read the request log and the meter events, and create the objects Stripe
creates on its own (subscriptions after a checkout, invoices at a billing cycle)."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import resources
from .errors import StripeError
from .resources import DAY, INVOICE_STATUSES, SUBSCRIPTION_STATUSES
from .state import KINDS, Fault, State, new_id

ControlHandler = Callable[..., Any]


def _bad(message: str) -> StripeError:
    return StripeError(400, message)


def _int(body: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _bad(f"{name} must be an integer")
    return value


def _reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)}")


def reset(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    state.reset()
    return {"reset": True}


def clock(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    if "now" not in body:
        raise _bad('send {"now": epoch seconds or null}')
    state.fixed_now = _int(body, "now")
    return {"now": state.now(), "fixed": state.fixed_now is not None}


def faults(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    """One fault rule at a time: ``error`` (500 api_error), ``slow`` (sleep ``delay`` s, at most 30,
    then answer), ``down`` (close the connection unanswered); ``ok`` removes it. ``count`` requests."""
    _reject_unknown(body, {"mode", "path_prefix", "count", "delay"})
    mode = body.get("mode")
    if mode not in ("ok", "error", "slow", "down"):
        raise _bad("mode must be one of ok, error, slow, down")
    count = _int(body, "count")
    delay = body.get("delay", 5 if mode == "slow" else 0)
    if not isinstance(delay, int | float) or delay < 0:
        raise _bad("delay must be a non-negative number of seconds")
    prefix = body.get("path_prefix") or "/v1"
    if not isinstance(prefix, str) or not prefix.startswith("/v1"):
        raise _bad("path_prefix must start with /v1")
    state.fault = None if mode == "ok" else Fault(mode, prefix, count, min(float(delay), 30.0))
    return {"mode": mode, "path_prefix": prefix, "count": count, "delay": min(float(delay), 30.0)}


def requests_list(state: State, body: dict[str, Any], base: str) -> list[dict[str, Any]]:
    return state.requests


def requests_clear(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    state.requests = []
    return {"cleared": True}


def meter_events(state: State, body: dict[str, Any], base: str) -> list[dict[str, Any]]:
    return list(state.meter_events.values())


def objects(state: State, body: dict[str, Any], base: str, kind: str) -> list[dict[str, Any]]:
    """Every stored object of a kind, oldest first, private fields included (a checkout session's
    ``line_items`` and ``subscription_data``: what the client sent)."""
    if kind not in KINDS:
        raise StripeError(404, f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    return [{key.lstrip("_"): value for key, value in obj.items()} for obj in state.objects[kind].values()]


# --- subscriptions -------------------------------------------------------------------------------


def _add_interval(start: int, interval: str, count: int) -> int:
    if interval in ("day", "week"):
        return start + count * DAY * (7 if interval == "week" else 1)
    moment = datetime.fromtimestamp(start, UTC)
    years, month0 = divmod(moment.month - 1 + count * (12 if interval == "year" else 1), 12)
    year = moment.year + years
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return int(moment.replace(year=year, month=month0 + 1, day=day).timestamp())


def _items(state: State, subscription: dict[str, Any], raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise _bad("items must be a non-empty list of {price, quantity?}")
    items = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("price"), str):
            raise _bad("each item needs a price id")
        _reject_unknown(entry, {"price", "quantity", "metadata"})
        price = state.objects["prices"].get(entry["price"])
        if price is None or not price["recurring"]:
            raise _bad(f"no recurring price {entry['price']!r}")
        metered = price["recurring"]["usage_type"] == "metered"
        quantity = _int(entry, "quantity")
        if metered and quantity is not None:
            raise _bad(f"metered price {price['id']} takes no quantity")
        items.append(
            {
                "id": new_id("si_"),
                "object": "subscription_item",
                "created": subscription["created"],
                "price": price["id"],
                "quantity": None if metered else (1 if quantity is None else quantity),
                "subscription": subscription["id"],
                "metadata": entry.get("metadata") or {},
                "current_period_start": subscription["current_period_start"],
                "current_period_end": subscription["current_period_end"],
            }
        )
    return items


_SUBSCRIPTION_FIELDS = {
    "status",
    "metadata",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "cancel_at",
    "canceled_at",
    "ended_at",
    "trial_start",
    "trial_end",
    "latest_invoice",
    "default_payment_method",
    "description",
    "items",
}


def _apply_subscription(state: State, subscription: dict[str, Any], body: dict[str, Any]) -> None:
    _reject_unknown(
        body, _SUBSCRIPTION_FIELDS | ({"customer"} if subscription["customer"] is None else set())
    )
    if "status" in body and body["status"] not in SUBSCRIPTION_STATUSES:
        raise _bad(f"status must be one of {', '.join(SUBSCRIPTION_STATUSES)}")
    for name in (
        "current_period_start",
        "current_period_end",
        "cancel_at",
        "canceled_at",
        "ended_at",
        "trial_start",
        "trial_end",
    ):
        _int(body, name)
    if "metadata" in body and not isinstance(body["metadata"], dict):
        raise _bad("metadata must be an object")
    subscription.update({key: value for key, value in body.items() if key not in ("items", "customer")})
    if "items" in body:
        subscription["items"]["data"] = _items(state, subscription, body["items"])
    for item in subscription["items"]["data"]:
        item["current_period_start"] = subscription["current_period_start"]
        item["current_period_end"] = subscription["current_period_end"]
    subscription["items"]["total_count"] = len(subscription["items"]["data"])


def subscription_create(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    """Creates a subscription (what Stripe does after a checkout); the period ends one price interval
    after it starts unless ``current_period_end`` is given."""
    customer = body.get("customer")
    if not isinstance(customer, str) or customer not in state.objects["customers"]:
        raise _bad(f"no customer {customer!r}")
    if not isinstance(body.get("items"), list) or not body["items"] or not isinstance(body["items"][0], dict):
        raise _bad("items must be a non-empty list of {price, quantity?}")
    now = state.now()
    start = _int(body, "current_period_start", now)
    first = state.objects["prices"].get(str(body["items"][0].get("price")))
    recurring = (first or {}).get("recurring") or {"interval": "month", "interval_count": 1}
    subscription: dict[str, Any] = {
        "id": new_id("sub_"),
        "object": "subscription",
        "created": now,
        "livemode": False,
        "customer": None,
        "status": "active",
        "metadata": {},
        "current_period_start": start,
        "current_period_end": _add_interval(
            int(start or now), recurring["interval"], recurring["interval_count"]
        ),
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "latest_invoice": None,
        "billing_cycle_anchor": start,
        "collection_method": "charge_automatically",
        "currency": (first or {}).get("currency", "usd"),
        "start_date": now,
        "trial_start": None,
        "trial_end": None,
        "default_payment_method": None,
        "description": None,
    }
    subscription["items"] = {
        "object": "list",
        "data": [],
        "has_more": False,
        "total_count": 0,
        "url": f"/v1/subscription_items?subscription={subscription['id']}",
    }
    _apply_subscription(state, subscription, body)
    subscription["customer"] = customer
    state.add("subscriptions", subscription)
    return state.public(subscription)


def subscription_update(
    state: State, body: dict[str, Any], base: str, subscription_id: str
) -> dict[str, Any]:
    subscription = state.objects["subscriptions"].get(subscription_id)
    if subscription is None:
        raise StripeError(404, f"no subscription {subscription_id!r}")
    _apply_subscription(state, subscription, body)
    return state.public(subscription)


# --- invoices ------------------------------------------------------------------------------------

_INVOICE_FIELDS = {
    "status",
    "amount_due",
    "amount_paid",
    "period_start",
    "period_end",
    "number",
    "currency",
    "lines",
    "metadata",
    "billing_reason",
    "due_date",
    "attempt_count",
}


def _apply_invoice(state: State, invoice: dict[str, Any], body: dict[str, Any]) -> None:
    if "status" in body and body["status"] not in INVOICE_STATUSES:
        raise _bad(f"status must be one of {', '.join(INVOICE_STATUSES)}")
    for name in ("amount_due", "amount_paid", "period_start", "period_end", "due_date", "attempt_count"):
        _int(body, name)
    if "lines" in body:
        if not isinstance(body["lines"], list) or not all(isinstance(line, dict) for line in body["lines"]):
            raise _bad("lines must be a list of objects")
        invoice["lines"]["data"] = [
            {"id": new_id("il_"), "object": "line_item", "invoice": invoice["id"], "livemode": False, **line}
            for line in body["lines"]
        ]
        invoice["lines"]["total_count"] = len(body["lines"])
    invoice.update({key: value for key, value in body.items() if key != "lines"})
    if invoice["status"] == "paid" and "amount_paid" not in body:
        invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = max(0, invoice["amount_due"] - invoice["amount_paid"])
    invoice["total"] = invoice["subtotal"] = invoice["amount_due"]
    transitions = invoice["status_transitions"]
    now = state.now()
    if invoice["status"] != "draft":
        transitions["finalized_at"] = transitions["finalized_at"] or now
    for status, field in (
        ("paid", "paid_at"),
        ("void", "voided_at"),
        ("uncollectible", "marked_uncollectible_at"),
    ):
        if invoice["status"] == status:
            transitions[field] = transitions[field] or now


def invoice_create(state: State, body: dict[str, Any], base: str) -> dict[str, Any]:
    """Creates an invoice (what Stripe does at a billing cycle), linked to its subscription as the
    subscription's ``latest_invoice``; ``number`` is generated when absent."""
    _reject_unknown(body, _INVOICE_FIELDS | {"customer", "subscription"})
    customer = body.get("customer")
    if not isinstance(customer, str) or customer not in state.objects["customers"]:
        raise _bad(f"no customer {customer!r}")
    subscription_id = body.get("subscription")
    subscription = state.objects["subscriptions"].get(subscription_id or "")
    if subscription_id is not None and (subscription is None or subscription["customer"] != customer):
        raise _bad(f"no subscription {subscription_id!r} of customer {customer}")
    now = state.now()
    state.invoice_seq += 1
    invoice_id = new_id("in_")
    invoice: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "created": now,
        "livemode": False,
        "customer": customer,
        "subscription": subscription_id,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": subscription_id}}
        if subscription_id
        else None,
        "number": f"STANDIN-{state.invoice_seq:04d}",
        "status": "open",
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "total": 0,
        "subtotal": 0,
        "currency": subscription["currency"] if subscription else "usd",
        "period_start": now,
        "period_end": now,
        "hosted_invoice_url": f"{base}/invoice/{invoice_id}",
        "invoice_pdf": f"{base}/invoice/{invoice_id}/pdf",
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "metadata": {},
        "billing_reason": "subscription_cycle" if subscription_id else "manual",
        "collection_method": "charge_automatically",
        "attempt_count": 0,
        "due_date": None,
        "status_transitions": {
            "finalized_at": None,
            "paid_at": None,
            "voided_at": None,
            "marked_uncollectible_at": None,
        },
    }
    _apply_invoice(
        state, invoice, {key: value for key, value in body.items() if key not in ("customer", "subscription")}
    )
    state.add("invoices", invoice)
    if subscription is not None:
        subscription["latest_invoice"] = invoice_id
    return state.public(invoice)


def invoice_update(state: State, body: dict[str, Any], base: str, invoice_id: str) -> dict[str, Any]:
    _reject_unknown(body, _INVOICE_FIELDS)
    invoice = state.objects["invoices"].get(invoice_id)
    if invoice is None:
        raise StripeError(404, f"no invoice {invoice_id!r}")
    _apply_invoice(state, invoice, body)
    return state.public(invoice)


# --- checkout outcomes ---------------------------------------------------------------------------


def _open_session(state: State, session_id: str) -> dict[str, Any]:
    session = state.objects["checkout_sessions"].get(session_id)
    if session is None:
        raise StripeError(404, f"no checkout session {session_id!r}")
    if session["status"] != "open":
        raise _bad(f"checkout session {session_id} is {session['status']}, not open")
    return session


def checkout_complete(state: State, body: dict[str, Any], base: str, session_id: str) -> dict[str, Any]:
    """What a customer paying on Checkout causes: the session completes and, in subscription mode,
    a subscription exists (``subscription_data`` metadata and billing_cycle_anchor applied). Returns
    ``{"session", "subscription"}`` (the ``checkout.session.completed`` and subscription payloads)."""
    _reject_unknown(body, {"subscription_status"})
    session = _open_session(state, session_id)
    if session["customer"] is None:
        params = {"email": session["customer_email"]} if session["customer_email"] else {}
        session["customer"] = resources.customer_create(resources.Ctx(state, params, base))["id"]
    subscription = None
    if session["mode"] == "subscription":
        data = session["_subscription_data"]
        request: dict[str, Any] = {
            "customer": session["customer"],
            "status": body.get("subscription_status", "active"),
            "metadata": data.get("metadata") or {},
            "items": [
                {
                    "price": line["price"]["id"],
                    **({"quantity": line["quantity"]} if line["quantity"] is not None else {}),
                }
                for line in session["_line_items"]["data"]
            ],
        }
        if data.get("billing_cycle_anchor"):
            request["current_period_end"] = int(data["billing_cycle_anchor"])
        subscription = subscription_create(state, request, base)
        session["subscription"] = subscription["id"]
    session["status"] = "complete"
    session["payment_status"] = "no_payment_required" if session["mode"] == "setup" else "paid"
    return {"session": state.public(session), "subscription": subscription}


def checkout_expire(state: State, body: dict[str, Any], base: str, session_id: str) -> dict[str, Any]:
    session = _open_session(state, session_id)
    session["status"] = "expired"
    return state.public(session)


ID = r"([^/]+)"
CONTROL_ROUTES: list[tuple[str, str, ControlHandler]] = [
    ("POST", r"/_standin/reset", reset),
    ("POST", r"/_standin/clock", clock),
    ("POST", r"/_standin/faults", faults),
    ("GET", r"/_standin/requests", requests_list),
    ("POST", r"/_standin/requests/clear", requests_clear),
    ("GET", r"/_standin/meter_events", meter_events),
    ("GET", rf"/_standin/objects/{ID}", objects),
    ("POST", r"/_standin/subscriptions", subscription_create),
    ("POST", rf"/_standin/subscriptions/{ID}", subscription_update),
    ("POST", r"/_standin/invoices", invoice_create),
    ("POST", rf"/_standin/invoices/{ID}", invoice_update),
    ("POST", rf"/_standin/checkout_sessions/{ID}/complete", checkout_complete),
    ("POST", rf"/_standin/checkout_sessions/{ID}/expire", checkout_expire),
]
