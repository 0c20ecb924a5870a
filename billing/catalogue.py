"""``stripe_sync``: make Stripe's catalogue match the plans table, idempotently.

For the one Billing Meter (API credits, summed) and every paid plan (``price_cents_monthly > 0``):

* a Product with a stable id (``candlestack_plan_<name>``), renamed when the plan is;
* a flat monthly Price found by its lookup key ``candlestack_<name>_monthly``;
* with overage on, a metered Price on the meter, ``candlestack_<name>_overage``: the plan's price per
  1,000 credits, each started 1,000 billed (``transform_quantity`` divide by 1,000, round up).

Prices cannot change amount at Stripe: a changed price is a new Price that takes over the lookup key
(``transfer_lookup_key``); the old one is archived (subscriptions on it keep it until they change).
A rerun finds everything by id or lookup key and creates nothing; each create carries an
idempotency key derived from what it creates, so a run killed after Stripe answered and rerun within
Stripe's idempotency window gets the same object back. The Stripe ids are stored on the plan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from billing import services
from billing.models import Plan
from billing.stripe_api import StripeRejected, client, errors


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _digest(params: dict) -> str:
    """A short stable digest of a request's parameters (for its idempotency key)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _field(obj: Any, name: str) -> Any:
    """A field of a nested Stripe object, None when the object or the field is absent."""
    return obj.to_dict().get(name) if obj is not None else None


def product_id(plan: Plan) -> str:
    return f"candlestack_plan_{plan.name}"


def monthly_lookup_key(plan: Plan) -> str:
    return f"candlestack_{plan.name}_monthly"


def overage_lookup_key(plan: Plan) -> str:
    return f"candlestack_{plan.name}_overage"


def meter_ensure(report: SyncReport, say: Callable[[str], None]) -> str:
    """The active meter for ``STRIPE_METER_EVENT_NAME`` (created when missing); its id."""
    event_name = settings.STRIPE_METER_EVENT_NAME
    stripe = client()
    with errors("list meters"):
        meters = stripe.v1.billing.meters.list(params={"status": "active", "limit": 100})
    for meter in meters.auto_paging_iter():
        if meter.event_name == event_name:
            report.unchanged.append(f"meter {event_name}")
            say(f"meter {event_name}: unchanged ({meter.id})")
            return meter.id
    with errors("create meter"):
        meter = stripe.v1.billing.meters.create(
            params={
                "display_name": "Candlestack API credits",
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            },
            options={"idempotency_key": f"candlestack-meter-{event_name}"},
        )
    report.created.append(f"meter {event_name}")
    say(f"meter {event_name}: created ({meter.id})")
    return meter.id


def _product_ensure(plan: Plan, report: SyncReport, say: Callable[[str], None]) -> str:
    stripe = client()
    pid = product_id(plan)
    wanted: dict[str, Any] = {
        "name": plan.display_name or plan.name,
        "description": plan.description or plan.name,
    }
    try:
        with errors(f"retrieve product {pid}"):
            product = stripe.v1.products.retrieve(pid)
    except StripeRejected as exc:
        if exc.status != 404:
            raise
        with errors(f"create product {pid}"):
            stripe.v1.products.create(
                params={"id": pid, **wanted, "metadata": {"candlestack_plan": plan.name}},  # type: ignore[typeddict-item]
                options={"idempotency_key": f"candlestack-product-{pid}"},
            )
        report.created.append(f"product {pid}")
        say(f"product {pid}: created")
        return pid
    if (
        product.name != wanted["name"]
        or (product.description or "") != wanted["description"]
        or not product.active
    ):
        with errors(f"update product {pid}"):
            stripe.v1.products.update(
                pid,
                params={**wanted, "active": True},  # type: ignore[arg-type,typeddict-item]
                options={"idempotency_key": f"candlestack-product-{pid}-{_digest(wanted)}"},
            )
        report.changed.append(f"product {pid}")
        say(f"product {pid}: updated")
    else:
        report.unchanged.append(f"product {pid}")
        say(f"product {pid}: unchanged")
    return pid


def _price_ensure(
    *, lookup_key: str, wanted: dict, matches: Callable, report: SyncReport, say: Callable[[str], None]
) -> str:
    """The active price under ``lookup_key`` if it ``matches`` ``wanted``; else a new one that takes
    the lookup key over (the old one archived)."""
    stripe = client()
    with errors(f"list prices {lookup_key}"):
        found = stripe.v1.prices.list(params={"lookup_keys": [lookup_key], "limit": 10})
    current = next((p for p in found.data if p.lookup_key == lookup_key), None)
    if current is not None and current.active and matches(current):
        report.unchanged.append(f"price {lookup_key}")
        say(f"price {lookup_key}: unchanged ({current.id})")
        return current.id
    with errors(f"create price {lookup_key}"):
        price = stripe.v1.prices.create(
            params={**wanted, "lookup_key": lookup_key, "transfer_lookup_key": True},  # type: ignore[typeddict-item]
            options={"idempotency_key": f"candlestack-price-{lookup_key}-{_digest(wanted)}"},
        )
    if current is not None and current.active:
        with errors(f"archive price {current.id}"):
            stripe.v1.prices.update(
                current.id,
                params={"active": False},
                options={"idempotency_key": f"candlestack-archive-{current.id}"},
            )
        report.changed.append(f"price {lookup_key}")
        say(f"price {lookup_key}: replaced {current.id} by {price.id} (old one archived)")
    else:
        report.created.append(f"price {lookup_key}")
        say(f"price {lookup_key}: created ({price.id})")
    return price.id


def stripe_sync(*, say: Callable[[str], None] = lambda line: None) -> SyncReport:
    """Make Stripe match the plans table (see the module docstring); ``say`` gets one line per
    object. Raises ``StripeUnavailable``/``StripeRejected`` (nothing stored for the plan that failed;
    a rerun continues from where Stripe is)."""
    report = SyncReport()
    currency = settings.STRIPE_CURRENCY.lower()
    meter_id = meter_ensure(report, say)
    for plan in Plan.objects.filter(price_cents_monthly__gt=0).order_by("sort_order", "id"):
        pid = _product_ensure(plan, report, say)
        monthly = _price_ensure(
            lookup_key=monthly_lookup_key(plan),
            wanted={
                "product": pid,
                "currency": currency,
                "unit_amount": plan.price_cents_monthly,
                "recurring": {"interval": "month"},
                "nickname": f"{plan.display_name} monthly",
                "metadata": {"candlestack_plan": plan.name, "kind": "monthly"},
            },
            matches=lambda p, plan=plan, pid=pid: (
                p.unit_amount == plan.price_cents_monthly and p.currency == currency and p.product == pid
            ),
            report=report,
            say=say,
        )
        overage = ""
        if plan.overage:
            overage = _price_ensure(
                lookup_key=overage_lookup_key(plan),
                wanted={
                    "product": pid,
                    "currency": currency,
                    "unit_amount": plan.overage_cents_per_1000,
                    "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
                    "transform_quantity": {"divide_by": 1000, "round": "up"},
                    "nickname": f"{plan.display_name} overage per 1,000 credits",
                    "metadata": {"candlestack_plan": plan.name, "kind": "overage"},
                },
                matches=lambda p, plan=plan, pid=pid: (
                    p.unit_amount == plan.overage_cents_per_1000
                    and p.currency == currency
                    and p.product == pid
                    and _field(p.recurring, "meter") == meter_id
                    and _field(p.transform_quantity, "divide_by") == 1000
                ),
                report=report,
                say=say,
            )
        ids = {"stripe_product_id": pid, "stripe_price_id": monthly, "stripe_overage_price_id": overage}
        if any(getattr(plan, name) != value for name, value in ids.items()):
            services.plan_update(plan=plan, **ids)
    return report
