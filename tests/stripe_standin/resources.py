"""The Stripe v1 resources the stand-in serves: one handler per route, each validating its
parameters the way Stripe does (unknown parameters refused) and returning the object's JSON.

Covered: customers, products, prices, billing meters, meter events and adjustments, meter event
summaries, Checkout Sessions, billing portal sessions, and read-only subscriptions and invoices
(which the control API creates, as Stripe would after a checkout or a billing cycle)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import forms
from .errors import StripeError
from .state import State, new_id, page

DAY = 86_400


@dataclass
class Ctx:
    state: State
    params: dict[str, Any]
    base: str  # the stand-in's own URL, for the pages it links to (checkout, portal, invoices)


Handler = Callable[..., dict[str, Any]]


def _stamp(ctx: Ctx, obj_type: str, prefix: str, **fields: Any) -> dict[str, Any]:
    return {"id": new_id(prefix), "object": obj_type, "created": ctx.state.now(), "livemode": False, **fields}


# --- customers -----------------------------------------------------------------------------------

_CUSTOMER_FIELDS = {"email", "name", "description", "phone", "address", "shipping", "preferred_locales"}
_CUSTOMER_PARAMS = _CUSTOMER_FIELDS | {"metadata", "invoice_settings", "tax_exempt", "payment_method"}


def _customer_fields(params: dict[str, Any], customer: dict[str, Any]) -> None:
    email = forms.string(params, "email", max_len=512)
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise StripeError(400, f"Invalid email address: {email}", code="email_invalid", param="email")
    merged = forms.metadata(customer["metadata"], params)  # validated before anything changes
    for name in _CUSTOMER_FIELDS:
        if name in params:
            customer[name] = params[name] if params[name] != "" else None
    customer["metadata"] = merged


def customer_create(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, _CUSTOMER_PARAMS)
    customer = _stamp(
        ctx,
        "customer",
        "cus_",
        email=None,
        name=None,
        description=None,
        phone=None,
        address=None,
        shipping=None,
        preferred_locales=[],
        metadata={},
        balance=0,
        currency=None,
        delinquent=False,
        invoice_settings={"default_payment_method": None},
        tax_exempt="none",
    )
    _customer_fields(ctx.params, customer)
    return ctx.state.add("customers", customer)


def _live_customer(ctx: Ctx, customer_id: str, *, param: str | None = None) -> dict[str, Any]:
    customer = ctx.state.get("customers", customer_id, label="customer", param=param)
    if customer.get("deleted"):
        raise StripeError(
            404 if param is None else 400,
            f"No such customer: '{customer_id}'",
            code="resource_missing",
            param=param or "id",
        )
    return customer


def customer_retrieve(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    return ctx.state.get("customers", customer_id, label="customer")  # a deleted one: {id, deleted}


def customer_update(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, _CUSTOMER_PARAMS)
    customer = _live_customer(ctx, customer_id)
    _customer_fields(ctx.params, customer)
    return customer


def customer_delete(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    customer = _live_customer(ctx, customer_id)
    customer["deleted"] = True
    return customer


def customer_list(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, {"email", "limit", "starting_after", "ending_before", "created"})
    email = forms.string(ctx.params, "email")
    items = [
        c
        for c in ctx.state.newest_first("customers")
        if not c.get("deleted") and (email is None or c["email"] == email)
    ]
    return page(items, ctx.params, "/v1/customers", "customer")


# --- products ------------------------------------------------------------------------------------

_PRODUCT_FIELDS = {
    "name",
    "description",
    "images",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
}


def _product_fields(params: dict[str, Any], product: dict[str, Any]) -> None:
    if "name" in params and not params["name"]:
        raise StripeError(400, "You must provide a name for the product.", param="name")
    active = forms.boolean(params, "active")
    merged = forms.metadata(product["metadata"], params)  # validated before anything changes
    for name in _PRODUCT_FIELDS:
        if name in params:
            product[name] = params[name] if params[name] != "" else None
    if active is not None:
        product["active"] = active
    product["metadata"] = merged


def product_create(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, _PRODUCT_FIELDS | {"id", "active", "metadata"})
    forms.string(ctx.params, "name", required=True)
    product_id = forms.string(ctx.params, "id") or new_id("prod_", 14)
    if product_id in ctx.state.objects["products"]:
        raise StripeError(
            400, f"Product already exists with ID '{product_id}'.", code="resource_already_exists", param="id"
        )
    product = _stamp(
        ctx,
        "product",
        "",
        name=None,
        description=None,
        images=[],
        shippable=None,
        statement_descriptor=None,
        tax_code=None,
        unit_label=None,
        url=None,
        active=True,
        metadata={},
        default_price=None,
        marketing_features=[],
        package_dimensions=None,
        type="service",
    )
    product["id"] = product_id
    _product_fields(ctx.params, product)
    product["updated"] = product["created"]
    return ctx.state.add("products", product)


def product_retrieve(ctx: Ctx, product_id: str) -> dict[str, Any]:
    return ctx.state.get("products", product_id, label="product")


def product_update(ctx: Ctx, product_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, _PRODUCT_FIELDS | {"active", "metadata", "default_price"})
    product = ctx.state.get("products", product_id, label="product")
    default_price = forms.string(ctx.params, "default_price")
    if default_price is not None:
        price = ctx.state.get("prices", default_price, label="price", param="default_price")
        if price["product"] != product_id:
            raise StripeError(400, "The default price must belong to this product.", param="default_price")
        product["default_price"] = default_price
    _product_fields(ctx.params, product)
    product["updated"] = ctx.state.now()
    return product


def product_delete(ctx: Ctx, product_id: str) -> dict[str, Any]:
    ctx.state.get("products", product_id, label="product")
    if any(p["product"] == product_id for p in ctx.state.objects["prices"].values()):
        raise StripeError(
            400, "This product cannot be deleted because it has one or more user-created prices."
        )
    del ctx.state.objects["products"][product_id]
    return {"id": product_id, "object": "product", "deleted": True}


def product_list(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, {"active", "ids", "limit", "starting_after", "ending_before", "created"})
    active = forms.boolean(ctx.params, "active")
    ids = forms.sequence(ctx.params, "ids")
    items = [
        p
        for p in ctx.state.newest_first("products")
        if (active is None or p["active"] == active) and (not ids or p["id"] in ids)
    ]
    return page(items, ctx.params, "/v1/products", "product")


# --- prices --------------------------------------------------------------------------------------

_PRICE_MUTABLE = {"active", "metadata", "nickname", "lookup_key", "transfer_lookup_key", "tax_behavior"}
_PRICE_CREATE = _PRICE_MUTABLE | {
    "product",
    "product_data",
    "currency",
    "unit_amount",
    "unit_amount_decimal",
    "recurring",
    "transform_quantity",
    "billing_scheme",
}


def _set_lookup_key(ctx: Ctx, price: dict[str, Any]) -> None:
    """``lookup_key`` is unique among prices: a taken one moves only with ``transfer_lookup_key``."""
    if "lookup_key" not in ctx.params:
        return
    key = forms.string(ctx.params, "lookup_key", max_len=200)
    transfer = forms.boolean(ctx.params, "transfer_lookup_key")
    holder = next(
        (
            p
            for p in ctx.state.objects["prices"].values()
            if key and p["lookup_key"] == key and p is not price
        ),
        None,
    )
    if holder is not None:
        if not transfer:
            raise StripeError(
                400, f"A price (`{holder['id']}`) already uses that lookup key.", param="lookup_key"
            )
        holder["lookup_key"] = None
    price["lookup_key"] = key


def _recurring(ctx: Ctx) -> dict[str, Any] | None:
    params = forms.mapping(ctx.params, "recurring")
    if not params:
        return None
    forms.reject_unknown(
        params, {"interval", "interval_count", "usage_type", "meter", "trial_period_days"}, "recurring"
    )
    interval = forms.choice(params, "interval", ("day", "week", "month", "year"), required=True)
    count = forms.integer(params, "interval_count", minimum=1) or 1
    usage_type = forms.choice(params, "usage_type", ("licensed", "metered")) or "licensed"
    meter = forms.string(params, "meter")
    if usage_type == "metered":
        if meter is None:
            raise StripeError(
                400,
                "Metered prices must be backed by a billing meter: set `recurring[meter]`.",
                code="parameter_missing",
                param="recurring[meter]",
            )
        ctx.state.get("meters", meter, label="billing meter", param="recurring[meter]")
    elif meter is not None:
        raise StripeError(
            400, "`recurring[meter]` requires `recurring[usage_type]=metered`.", param="recurring[meter]"
        )
    return {
        "interval": interval,
        "interval_count": count,
        "usage_type": usage_type,
        "meter": meter,
        "aggregate_usage": None,
        "trial_period_days": forms.integer(params, "trial_period_days", minimum=0),
    }


def _transform(ctx: Ctx) -> dict[str, Any] | None:
    params = forms.mapping(ctx.params, "transform_quantity")
    if not params:
        return None
    forms.reject_unknown(params, {"divide_by", "round"}, "transform_quantity")
    divide_by = forms.integer(params, "divide_by", required=True, minimum=1)
    rounding = forms.choice(params, "round", ("up", "down"), required=True)
    return {"divide_by": divide_by, "round": rounding}


def price_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    forms.reject_unknown(params, _PRICE_CREATE)
    currency = forms.string(params, "currency", required=True)
    if not re.fullmatch(r"[a-z]{3}", str(currency)):
        raise StripeError(400, f"Invalid currency: {currency}", param="currency")
    if "product_data" in params:
        data = forms.mapping(params, "product_data")
        forms.reject_unknown(data, {"name", "metadata", "active", "id"}, "product_data")
        product_id = product_create(Ctx(ctx.state, data, ctx.base))["id"]
    else:
        product_id = str(forms.string(params, "product", required=True))
        ctx.state.get("products", product_id, label="product", param="product")
    scheme = forms.choice(params, "billing_scheme", ("per_unit", "tiered")) or "per_unit"
    if scheme == "tiered":
        raise StripeError(400, "The stand-in supports only billing_scheme=per_unit.", param="billing_scheme")
    unit_amount = forms.integer(params, "unit_amount", minimum=0)
    decimal = forms.string(params, "unit_amount_decimal")
    if unit_amount is not None and decimal is not None:
        raise StripeError(
            400, "You may only specify one of these parameters: unit_amount, unit_amount_decimal."
        )
    if unit_amount is None and decimal is None:
        raise forms.missing("unit_amount")
    if decimal is not None:
        if not re.fullmatch(r"[0-9]+(\.[0-9]{1,12})?", decimal):
            raise StripeError(400, f"Invalid decimal: {decimal}", param="unit_amount_decimal")
        if re.fullmatch(r"[0-9]+(\.0+)?", decimal):
            unit_amount = int(decimal.split(".")[0])
    recurring = _recurring(ctx)
    price = _stamp(
        ctx,
        "price",
        "price_",
        product=product_id,
        currency=currency,
        unit_amount=unit_amount,
        unit_amount_decimal=decimal if decimal is not None else str(unit_amount),
        billing_scheme=scheme,
        recurring=recurring,
        type="recurring" if recurring else "one_time",
        transform_quantity=_transform(ctx),
        nickname=forms.string(params, "nickname"),
        lookup_key=None,
        active=True,
        metadata={},
        tax_behavior=forms.choice(params, "tax_behavior", ("inclusive", "exclusive", "unspecified"))
        or "unspecified",
        custom_unit_amount=None,
        tiers_mode=None,
    )
    active = forms.boolean(params, "active")
    price["active"] = True if active is None else active
    price["metadata"] = forms.metadata({}, params)
    _set_lookup_key(ctx, price)
    return ctx.state.add("prices", price)


def price_retrieve(ctx: Ctx, price_id: str) -> dict[str, Any]:
    return ctx.state.get("prices", price_id, label="price")


def price_update(ctx: Ctx, price_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, _PRICE_MUTABLE)  # amounts, currency, recurring: immutable
    price = ctx.state.get("prices", price_id, label="price")
    changes: dict[str, Any] = {"metadata": forms.metadata(price["metadata"], ctx.params)}
    if "active" in ctx.params:
        changes["active"] = forms.boolean(ctx.params, "active")
    if "nickname" in ctx.params:
        changes["nickname"] = forms.string(ctx.params, "nickname")
    if "tax_behavior" in ctx.params:
        changes["tax_behavior"] = forms.choice(
            ctx.params, "tax_behavior", ("inclusive", "exclusive", "unspecified")
        )
    _set_lookup_key(ctx, price)  # the last check; nothing has changed before it
    price.update(changes)
    return price


def price_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    forms.reject_unknown(
        params,
        {
            "active",
            "currency",
            "product",
            "type",
            "lookup_keys",
            "recurring",
            "limit",
            "starting_after",
            "ending_before",
            "created",
        },
    )
    active = forms.boolean(params, "active")
    currency = forms.string(params, "currency")
    product = forms.string(params, "product")
    type_ = forms.choice(params, "type", ("one_time", "recurring"))
    lookup_keys = forms.sequence(params, "lookup_keys")
    if len(lookup_keys) > 10:
        raise StripeError(400, "You may pass at most 10 lookup keys.", param="lookup_keys")
    recurring = forms.mapping(params, "recurring")
    forms.reject_unknown(recurring, {"interval", "usage_type", "meter"}, "recurring")

    def matches(p: dict[str, Any]) -> bool:
        return (
            (active is None or p["active"] == active)
            and (currency is None or p["currency"] == currency)
            and (product is None or p["product"] == product)
            and (type_ is None or p["type"] == type_)
            and (not lookup_keys or p["lookup_key"] in lookup_keys)
            and all((p["recurring"] or {}).get(key) == value for key, value in recurring.items())
        )

    items = [p for p in ctx.state.newest_first("prices") if matches(p)]
    return page(items, params, "/v1/prices", "price")


# --- billing meters ------------------------------------------------------------------------------


def _event_name_free(ctx: Ctx, event_name: str, *, but: str | None = None) -> None:
    for meter in ctx.state.objects["meters"].values():
        if meter["status"] == "active" and meter["event_name"] == event_name and meter["id"] != but:
            raise StripeError(
                400,
                f"An active meter with event_name `{event_name}` already exists ({meter['id']}).",
                param="event_name",
            )


def meter_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    forms.reject_unknown(
        params,
        {
            "display_name",
            "event_name",
            "default_aggregation",
            "customer_mapping",
            "value_settings",
            "event_time_window",
        },
    )
    display_name = forms.string(params, "display_name", required=True, max_len=250)
    event_name = str(forms.string(params, "event_name", required=True, max_len=100))
    aggregation = forms.mapping(params, "default_aggregation", required=True)
    forms.reject_unknown(aggregation, {"formula"}, "default_aggregation")
    formula = forms.choice(aggregation, "formula", ("sum", "count", "last"), required=True)
    mapping = forms.mapping(params, "customer_mapping")
    forms.reject_unknown(mapping, {"event_payload_key", "type"}, "customer_mapping")
    if mapping:
        customer_key = forms.string(mapping, "event_payload_key", required=True, max_len=100)
        forms.choice(mapping, "type", ("by_id",), required=True)
    value_settings = forms.mapping(params, "value_settings")
    forms.reject_unknown(value_settings, {"event_payload_key"}, "value_settings")
    _event_name_free(ctx, event_name)
    meter = _stamp(
        ctx,
        "billing.meter",
        "mtr_",
        display_name=display_name,
        event_name=event_name,
        default_aggregation={"formula": formula},
        customer_mapping={
            "event_payload_key": customer_key if mapping else "stripe_customer_id",
            "type": "by_id",
        },
        value_settings={"event_payload_key": forms.string(value_settings, "event_payload_key") or "value"},
        event_time_window=forms.choice(params, "event_time_window", ("day", "hour")),
        status="active",
        status_transitions={"deactivated_at": None},
    )
    meter["updated"] = meter["created"]
    return ctx.state.add("meters", meter)


def meter_retrieve(ctx: Ctx, meter_id: str) -> dict[str, Any]:
    return ctx.state.get("meters", meter_id, label="billing meter")


def meter_update(ctx: Ctx, meter_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, {"display_name"})
    meter = ctx.state.get("meters", meter_id, label="billing meter")
    meter["display_name"] = forms.string(ctx.params, "display_name") or meter["display_name"]
    meter["updated"] = ctx.state.now()
    return meter


def meter_deactivate(ctx: Ctx, meter_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, set())
    meter = ctx.state.get("meters", meter_id, label="billing meter")
    meter["status"] = "inactive"
    meter["status_transitions"]["deactivated_at"] = meter["updated"] = ctx.state.now()
    return meter


def meter_reactivate(ctx: Ctx, meter_id: str) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, set())
    meter = ctx.state.get("meters", meter_id, label="billing meter")
    _event_name_free(ctx, meter["event_name"], but=meter_id)
    meter["status"] = "active"
    meter["status_transitions"]["deactivated_at"] = None
    meter["updated"] = ctx.state.now()
    return meter


def meter_list(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(ctx.params, {"status", "limit", "starting_after", "ending_before"})
    status = forms.choice(ctx.params, "status", ("active", "inactive"))
    items = [m for m in ctx.state.newest_first("meters") if status is None or m["status"] == status]
    return page(items, ctx.params, "/v1/billing/meters", "billing meter")


# --- meter events, adjustments, summaries --------------------------------------------------------


def meter_event_create(ctx: Ctx) -> dict[str, Any]:
    """Validated as Stripe documents (an active meter for the event name, the customer, a whole
    non-negative value, a timestamp from 35 days ago to 5 minutes ahead, a unique identifier); the
    event is stored with its receipt time on the stand-in clock."""
    state, params = ctx.state, ctx.params
    forms.reject_unknown(params, {"event_name", "payload", "identifier", "timestamp"})
    event_name = forms.string(params, "event_name", required=True, max_len=100)
    payload = forms.mapping(params, "payload", required=True)
    meter = next(
        (
            m
            for m in state.objects["meters"].values()
            if m["status"] == "active" and m["event_name"] == event_name
        ),
        None,
    )
    if meter is None:
        raise StripeError(400, f"No active meter found for event_name `{event_name}`.", param="event_name")
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer_id = str(forms.string(payload, customer_key, required=True))
    _live_customer(ctx, customer_id, param=f"payload[{customer_key}]")
    raw_value = payload.get(value_key)
    if raw_value is None and meter["default_aggregation"]["formula"] == "count":
        raw_value = "1"
    if raw_value is None:
        raise forms.missing(f"payload[{value_key}]")
    if not isinstance(raw_value, str) or not re.fullmatch(r"[0-9]+", raw_value):
        raise StripeError(
            400,
            f"The meter event value must be a non-negative whole number (got `{raw_value}`).",
            code="parameter_invalid_integer",
            param=f"payload[{value_key}]",
        )
    now = state.now()
    timestamp = forms.integer(params, "timestamp")
    timestamp = now if timestamp is None else timestamp
    if timestamp < now - 35 * DAY:
        raise StripeError(400, "Timestamp must be within the past 35 days.", param="timestamp")
    if timestamp > now + 300:
        raise StripeError(400, "Timestamp must not be more than 5 minutes in the future.", param="timestamp")
    identifier = forms.string(params, "identifier", max_len=100) or new_id("standin_")
    if identifier in state.meter_events:
        raise StripeError(
            400,
            f"An event with identifier `{identifier}` already exists.",
            code="resource_already_exists",
            param="identifier",
        )
    state.meter_events[identifier] = {
        "identifier": identifier,
        "event_name": event_name,
        "meter": meter["id"],
        "customer": customer_id,
        "value": int(raw_value),
        "timestamp": timestamp,
        "received_at": now,
        "canceled": False,
        "payload": payload,
    }
    return {
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": payload,
        "timestamp": timestamp,
    }


def meter_event_adjustment_create(ctx: Ctx) -> dict[str, Any]:
    """Cancels one event by identifier, within 24 hours of its receipt (stand-in clock)."""
    params = ctx.params
    forms.reject_unknown(params, {"event_name", "type", "cancel"})
    event_name = forms.string(params, "event_name", required=True)
    forms.choice(params, "type", ("cancel",), required=True)
    cancel = forms.mapping(params, "cancel", required=True)
    forms.reject_unknown(cancel, {"identifier"}, "cancel")
    identifier = str(forms.string(cancel, "identifier", required=True))
    event = ctx.state.meter_events.get(identifier)
    if event is None or event["event_name"] != event_name:
        raise StripeError(
            400,
            f"No meter event with identifier `{identifier}` was found for event_name `{event_name}`.",
            code="resource_missing",
            param="cancel[identifier]",
        )
    if event["canceled"]:
        raise StripeError(
            400, f"The meter event `{identifier}` is already canceled.", param="cancel[identifier]"
        )
    if ctx.state.now() - event["received_at"] > DAY:
        raise StripeError(
            400,
            "Meter events can only be canceled within 24 hours of being received.",
            param="cancel[identifier]",
        )
    event["canceled"] = True
    return {
        "object": "billing.meter_event_adjustment",
        "event_name": event_name,
        "status": "complete",
        "type": "cancel",
        "cancel": {"identifier": identifier},
        "livemode": False,
    }


def _aggregate(formula: str, events: list[dict[str, Any]]) -> float:
    if formula == "count":
        return float(len(events))
    if formula == "last":
        return float(max(events, key=lambda e: e["timestamp"])["value"]) if events else 0.0
    return float(sum(e["value"] for e in events))


def meter_event_summaries(ctx: Ctx, meter_id: str) -> dict[str, Any]:
    """Non-canceled events of one customer in [start_time, end_time), aggregated by the meter's
    formula: one summary for the range, or one per hour/day window that has events (newest first)."""
    params = ctx.params
    forms.reject_unknown(
        params,
        {
            "customer",
            "start_time",
            "end_time",
            "value_grouping_window",
            "limit",
            "starting_after",
            "ending_before",
        },
    )
    meter = ctx.state.get("meters", meter_id, label="billing meter")
    customer = str(forms.string(params, "customer", required=True))
    ctx.state.get("customers", customer, label="customer", param="customer")
    start = int(forms.integer(params, "start_time", required=True) or 0)
    end = int(forms.integer(params, "end_time", required=True) or 0)
    window = forms.choice(params, "value_grouping_window", ("hour", "day"))
    step = {"hour": 3600, "day": DAY, None: 60}[window]
    for name, value in (("start_time", start), ("end_time", end)):
        if value % step:
            raise StripeError(
                400, f"{name} must be aligned with {window or 'minute'} boundaries.", param=name
            )
    if end <= start:
        raise StripeError(400, "end_time must be after start_time.", param="end_time")
    events = [
        e
        for e in ctx.state.meter_events.values()
        if e["meter"] == meter_id
        and e["customer"] == customer
        and not e["canceled"]
        and start <= e["timestamp"] < end
    ]
    formula = meter["default_aggregation"]["formula"]
    if window is None:
        windows = [(start, end)]
    else:
        starts = sorted({start + (e["timestamp"] - start) // step * step for e in events}, reverse=True)
        windows = [(lo, lo + step) for lo in starts]
    summaries = []
    for lo, hi in windows:
        digest = hashlib.sha256(f"{meter_id}:{customer}:{lo}:{hi}".encode()).hexdigest()[:32]
        summaries.append(
            {
                "id": f"mtrusg_test_{digest}",
                "object": "billing.meter_event_summary",
                "aggregated_value": _aggregate(formula, [e for e in events if lo <= e["timestamp"] < hi]),
                "start_time": lo,
                "end_time": hi,
                "livemode": False,
                "meter": meter_id,
            }
        )
    return page(summaries, params, f"/v1/billing/meters/{meter_id}/event_summaries", "meter event summary")


# --- Checkout and the billing portal -------------------------------------------------------------

_CHECKOUT_PARAMS = {
    "mode",
    "customer",
    "customer_email",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "metadata",
    "subscription_data",
    "allow_promotion_codes",
    "billing_address_collection",
    "customer_update",
    "payment_method_types",
    "expires_at",
    "locale",
    "automatic_tax",
    "tax_id_collection",
    "consent_collection",
    "payment_method_collection",
    "currency",
    "discounts",
    "phone_number_collection",
    "custom_text",
    "invoice_creation",
    "payment_intent_data",
    "setup_intent_data",
    "submit_type",
    "saved_payment_method_options",
}
_SUBSCRIPTION_DATA = {
    "metadata",
    "billing_cycle_anchor",
    "trial_period_days",
    "trial_end",
    "description",
    "proration_behavior",
    "default_tax_rates",
    "trial_settings",
    "invoice_settings",
    "application_fee_percent",
    "billing_mode",
}


def _checkout_line_items(ctx: Ctx, mode: str) -> list[dict[str, Any]]:
    raw = forms.sequence(ctx.params, "line_items")
    if mode == "setup":
        if raw:
            raise StripeError(400, "line_items cannot be used in `setup` mode.", param="line_items")
        return []
    if not raw:
        raise forms.missing("line_items")
    lines: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        name = f"line_items[{index}]"
        if not isinstance(item, dict):
            raise StripeError(400, f"Invalid object: {name}", param=name)
        forms.reject_unknown(item, {"price", "quantity", "adjustable_quantity", "tax_rates"}, name)
        price_id = str(forms.string(item, "price", required=True))
        price = ctx.state.get("prices", price_id, label="price", param=f"{name}[price]")
        if not price["active"]:
            raise StripeError(
                400,
                "The price specified is inactive. This field only accepts active prices.",
                param=f"{name}[price]",
            )
        quantity = forms.integer(item, "quantity", minimum=0)
        metered = (price["recurring"] or {}).get("usage_type") == "metered"
        if metered and quantity is not None:
            raise StripeError(
                400,
                "Quantity should not be specified where usage_type is `metered`. "
                f"Remove quantity from `{name}`.",
                param=f"{name}[quantity]",
            )
        if not metered and quantity is None:
            raise StripeError(
                400,
                f"Quantity is required. Add `quantity` to `{name}`.",
                code="parameter_missing",
                param=f"{name}[quantity]",
            )
        if mode == "payment" and price["recurring"]:
            raise StripeError(
                400, "You specified `payment` mode but passed a recurring price.", param=f"{name}[price]"
            )
        lines.append(
            {"id": new_id("li_"), "object": "item", "price": ctx.state.public(price), "quantity": quantity}
        )
    if mode == "subscription" and not any(line["price"]["recurring"] for line in lines):
        raise StripeError(
            400,
            "You must provide at least one recurring price in `subscription` mode when using prices.",
            param="line_items",
        )
    return lines


def checkout_session_create(ctx: Ctx) -> dict[str, Any]:
    state, params = ctx.state, ctx.params
    forms.reject_unknown(params, _CHECKOUT_PARAMS)
    mode = str(forms.choice(params, "mode", ("payment", "setup", "subscription"), required=True))
    customer = forms.string(params, "customer")
    if customer is not None:
        _live_customer(ctx, customer, param="customer")
        if "customer_email" in params:
            raise StripeError(400, "You may only specify one of these parameters: customer, customer_email.")
    success_url = forms.string(params, "success_url", required=True, max_len=5000)
    subscription_data = forms.mapping(params, "subscription_data")
    if subscription_data and mode != "subscription":
        raise StripeError(
            400, "subscription_data can only be used in `subscription` mode.", param="subscription_data"
        )
    forms.reject_unknown(subscription_data, _SUBSCRIPTION_DATA, "subscription_data")
    anchor = forms.integer(subscription_data, "billing_cycle_anchor")
    if anchor is not None and anchor <= state.now():
        raise StripeError(
            400,
            "billing_cycle_anchor must be in the future.",
            param="subscription_data[billing_cycle_anchor]",
        )
    lines = _checkout_line_items(ctx, mode)
    now = state.now()
    expires_at = forms.integer(params, "expires_at")
    if expires_at is not None and not now + 1800 <= expires_at <= now + DAY:
        raise StripeError(
            400, "expires_at must be between 30 minutes and 24 hours from now.", param="expires_at"
        )
    session = _stamp(
        ctx,
        "checkout.session",
        "cs_test_",
        mode=mode,
        customer=customer,
        customer_email=forms.string(params, "customer_email"),
        client_reference_id=forms.string(params, "client_reference_id", max_len=200),
        metadata=forms.metadata({}, params),
        success_url=success_url,
        cancel_url=forms.string(params, "cancel_url"),
        status="open",
        payment_status="no_payment_required" if mode == "setup" else "unpaid",
        subscription=None,
        invoice=None,
        payment_intent=None,
        setup_intent=None,
        allow_promotion_codes=forms.boolean(params, "allow_promotion_codes"),
        currency=lines[0]["price"]["currency"] if lines else forms.string(params, "currency"),
        amount_total=sum((ln["price"]["unit_amount"] or 0) * (ln["quantity"] or 0) for ln in lines),
        locale=forms.string(params, "locale"),
        ui_mode="hosted",
        expires_at=expires_at if expires_at is not None else now + DAY,
    )
    session["id"] = new_id("cs_test_", 58)
    session["url"] = f"{ctx.base}/pay/{session['id']}"
    session["_line_items"] = {
        "object": "list",
        "data": lines,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session['id']}/line_items",
    }
    session["_subscription_data"] = subscription_data
    return state.add("checkout_sessions", session)


def checkout_session_retrieve(ctx: Ctx, session_id: str) -> dict[str, Any]:
    return ctx.state.get("checkout_sessions", session_id, label="checkout.session")


def checkout_session_list(ctx: Ctx) -> dict[str, Any]:
    forms.reject_unknown(
        ctx.params, {"customer", "subscription", "status", "limit", "starting_after", "ending_before"}
    )
    filters = {
        name: ctx.params[name] for name in ("customer", "subscription", "status") if name in ctx.params
    }
    items = [
        s for s in ctx.state.newest_first("checkout_sessions") if all(s[k] == v for k, v in filters.items())
    ]
    return page(items, ctx.params, "/v1/checkout/sessions", "checkout.session")


def portal_session_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    forms.reject_unknown(
        params, {"customer", "return_url", "configuration", "locale", "flow_data", "on_behalf_of"}
    )
    customer = str(forms.string(params, "customer", required=True))
    _live_customer(ctx, customer, param="customer")
    session = _stamp(
        ctx,
        "billing_portal.session",
        "bps_",
        customer=customer,
        return_url=forms.string(params, "return_url"),
        configuration=forms.string(params, "configuration") or "bpc_standin",
        locale=forms.string(params, "locale"),
        on_behalf_of=None,
        flow=forms.mapping(params, "flow_data") or None,
    )
    session["url"] = f"{ctx.base}/portal/{session['id']}"
    return ctx.state.add("portal_sessions", session)


# --- subscriptions and invoices (read-only here; the control API writes them) ---------------------

SUBSCRIPTION_STATUSES = (
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
)
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


def subscription_retrieve(ctx: Ctx, subscription_id: str) -> dict[str, Any]:
    return ctx.state.get("subscriptions", subscription_id, label="subscription")


def subscription_list(ctx: Ctx) -> dict[str, Any]:
    """Without ``status``, Stripe lists the subscriptions that are not canceled; ``status=all`` lists all."""
    params = ctx.params
    forms.reject_unknown(
        params, {"customer", "price", "status", "limit", "starting_after", "ending_before", "created"}
    )
    customer = forms.string(params, "customer")
    price = forms.string(params, "price")
    status = forms.choice(params, "status", (*SUBSCRIPTION_STATUSES, "all", "ended"))

    def matches(s: dict[str, Any]) -> bool:
        if status is None and s["status"] in ("canceled", "incomplete_expired"):
            return False
        if status == "ended" and s["status"] not in ("canceled", "incomplete_expired"):
            return False
        if status not in (None, "all", "ended") and s["status"] != status:
            return False
        return (customer is None or s["customer"] == customer) and (
            price is None or any(item["price"] == price for item in s["items"]["data"])
        )

    items = [s for s in ctx.state.newest_first("subscriptions") if matches(s)]
    return page(items, params, "/v1/subscriptions", "subscription")


def invoice_retrieve(ctx: Ctx, invoice_id: str) -> dict[str, Any]:
    return ctx.state.get("invoices", invoice_id, label="invoice")


def invoice_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    forms.reject_unknown(
        params,
        {
            "customer",
            "subscription",
            "status",
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "collection_method",
        },
    )
    forms.choice(params, "status", INVOICE_STATUSES)
    filters = {name: params[name] for name in ("customer", "subscription", "status") if name in params}
    items = [i for i in ctx.state.newest_first("invoices") if all(i[k] == v for k, v in filters.items())]
    return page(items, params, "/v1/invoices", "invoice")


ID = r"([^/]+)"
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", r"/v1/customers", customer_create),
    ("GET", r"/v1/customers", customer_list),
    ("GET", rf"/v1/customers/{ID}", customer_retrieve),
    ("POST", rf"/v1/customers/{ID}", customer_update),
    ("DELETE", rf"/v1/customers/{ID}", customer_delete),
    ("POST", r"/v1/products", product_create),
    ("GET", r"/v1/products", product_list),
    ("GET", rf"/v1/products/{ID}", product_retrieve),
    ("POST", rf"/v1/products/{ID}", product_update),
    ("DELETE", rf"/v1/products/{ID}", product_delete),
    ("POST", r"/v1/prices", price_create),
    ("GET", r"/v1/prices", price_list),
    ("GET", rf"/v1/prices/{ID}", price_retrieve),
    ("POST", rf"/v1/prices/{ID}", price_update),
    ("POST", r"/v1/billing/meters", meter_create),
    ("GET", r"/v1/billing/meters", meter_list),
    ("GET", rf"/v1/billing/meters/{ID}", meter_retrieve),
    ("POST", rf"/v1/billing/meters/{ID}", meter_update),
    ("POST", rf"/v1/billing/meters/{ID}/deactivate", meter_deactivate),
    ("POST", rf"/v1/billing/meters/{ID}/reactivate", meter_reactivate),
    ("GET", rf"/v1/billing/meters/{ID}/event_summaries", meter_event_summaries),
    ("POST", r"/v1/billing/meter_events", meter_event_create),
    ("POST", r"/v1/billing/meter_event_adjustments", meter_event_adjustment_create),
    ("POST", r"/v1/checkout/sessions", checkout_session_create),
    ("GET", r"/v1/checkout/sessions", checkout_session_list),
    ("GET", rf"/v1/checkout/sessions/{ID}", checkout_session_retrieve),
    ("POST", r"/v1/billing_portal/sessions", portal_session_create),
    ("GET", r"/v1/subscriptions", subscription_list),
    ("GET", rf"/v1/subscriptions/{ID}", subscription_retrieve),
    ("GET", r"/v1/invoices", invoice_list),
    ("GET", rf"/v1/invoices/{ID}", invoice_retrieve),
]
