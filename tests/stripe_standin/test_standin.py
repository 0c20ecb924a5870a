"""The Stripe stand-in driven through the real ``stripe`` library, as billing will drive it."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
import stripe

from tests.stripe_standin import webhooks
from tests.stripe_standin.client import StandIn
from tests.stripe_standin.forms import decode

# stripe's HTTPXClient posts its form as data=<str>, which httpx deprecates: not ours to fix here.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

DAY = 86_400
NOW = 1_800_000_000 // DAY * DAY  # a UTC midnight (2027-01-15), the stand-in clock in time-bound tests


@pytest.fixture
def client(stripe_env: StandIn) -> stripe.StripeClient:
    return stripe_env.stripe_client()


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada"})


@pytest.fixture
def meter(client: stripe.StripeClient) -> stripe.billing.Meter:
    return client.v1.billing.meters.create(
        params={
            "display_name": "API calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )


def send_event(
    client: stripe.StripeClient, customer_id: str, value: str, **params
) -> stripe.billing.MeterEvent:
    return client.v1.billing.meter_events.create(
        params={
            "event_name": "api_calls",
            "payload": {"stripe_customer_id": customer_id, "value": value},
            **params,
        }
    )


def test_stripe_env_points_the_settings_at_the_standin(stripe_env, settings):
    assert stripe_env.base == settings.STRIPE_API_BASE
    assert settings.STRIPE_SECRET_KEY == "sk_test_candlestack"
    assert settings.STRIPE_WEBHOOK_SECRET == "whsec_test_candlestack"
    assert httpx.get(f"{stripe_env.base}/v1/customers").status_code == 401  # reachable, and wants a key


def test_form_decoding_reads_stripe_bracket_notation():
    query = (
        "a[b][c]=v&items[0][price]=p&items[1][price]=q&items[1][quantity]=2&expand[]=x&expand[]=y"
        "&lookup_keys[0]=k&metadata[0]=z&empty="
    )
    assert decode(query) == {
        "a": {"b": {"c": "v"}},
        "items": [{"price": "p"}, {"price": "q", "quantity": "2"}],
        "expand": ["x", "y"],
        "lookup_keys": ["k"],
        "metadata": {"0": "z"},  # metadata keys are data, never list indexes
        "empty": "",
    }


def test_same_idempotency_key_replays_the_first_answer(client, stripe_env):
    params = {"email": "ada@example.com", "metadata": {"organization": "42"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "org-42-customer"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "org-42-customer"})

    assert second.id == first.id
    assert first.metadata.to_dict() == {"organization": "42"}
    assert len(stripe_env.objects("customers")) == 1
    log = stripe_env.requests()
    assert [(r["idempotency_key"], r["replayed"], r["status"]) for r in log] == [
        ("org-42-customer", False, 200),
        ("org-42-customer", True, 200),
    ]
    assert log[0]["params"] == {"email": "ada@example.com", "metadata": {"organization": "42"}}


def test_same_idempotency_key_with_other_params_is_refused(client, stripe_env):
    client.v1.customers.create(params={"email": "ada@example.com"}, options={"idempotency_key": "k1"})
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.customers.create(params={"email": "bob@example.com"}, options={"idempotency_key": "k1"})
    assert raised.value.http_status == 400
    assert len(stripe_env.objects("customers")) == 1


def test_requests_without_a_secret_key_are_refused(stripe_env):
    with pytest.raises(stripe.AuthenticationError):
        stripe_env.stripe_client(api_key="pk_test_publishable").v1.customers.list()
    assert stripe_env.requests()[-1]["status"] == 401


def test_unknown_parameter_and_unknown_path_get_stripe_errors(client, stripe_env):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.customers.create(params={"emial": "typo@example.com"})
    assert (raised.value.code, raised.value.param) == ("parameter_unknown", "emial")

    response = httpx.get(f"{stripe_env.base}/v1/no_such_thing", headers={"Authorization": "Bearer sk_test_x"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_deleted_customer_is_marked_and_left_out_of_lists(client, customer):
    deleted = client.v1.customers.delete(customer.id)
    assert (deleted.id, deleted.deleted) == (customer.id, True)
    assert client.v1.customers.retrieve(customer.id).to_dict() == {
        "id": customer.id,
        "object": "customer",
        "deleted": True,
    }
    assert client.v1.customers.list(params={"email": "ada@example.com"}).data == []
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(customer.id, params={"name": "Ghost"})


def test_product_with_a_chosen_id_and_a_duplicate(client):
    product = client.v1.products.create(
        params={"id": "candlestack_pro", "name": "Pro", "metadata": {"plan": "pro"}}
    )
    assert product.id == "candlestack_pro"
    assert client.v1.products.retrieve("candlestack_pro").name == "Pro"

    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        client.v1.products.create(params={"id": "candlestack_pro", "name": "Pro again"})
    assert (duplicate.value.http_status, duplicate.value.code) == (400, "resource_already_exists")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.products.retrieve("candlestack_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")

    client.v1.products.update("candlestack_pro", params={"active": False})
    assert client.v1.products.list(params={"active": True}).data == []
    assert [p.id for p in client.v1.products.list(params={"ids": ["candlestack_pro"]}).data] == [
        "candlestack_pro"
    ]


def test_prices_by_lookup_key_and_transfer_of_the_key(client):
    client.v1.products.create(params={"id": "candlestack_pro", "name": "Pro"})
    price = {"product": "candlestack_pro", "currency": "usd", "recurring": {"interval": "month"}}
    old = client.v1.prices.create(params={**price, "unit_amount": 4900, "lookup_key": "pro_monthly"})
    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.prices.create(params={**price, "unit_amount": 5900, "lookup_key": "pro_monthly"})
    assert taken.value.param == "lookup_key"

    new = client.v1.prices.create(
        params={**price, "unit_amount": 5900, "lookup_key": "pro_monthly", "transfer_lookup_key": True}
    )
    found = client.v1.prices.list(params={"lookup_keys": ["pro_monthly"], "expand": ["data.product"]}).data
    assert [(p.id, p.unit_amount, p.product.name) for p in found] == [(new.id, 5900, "Pro")]
    assert client.v1.prices.retrieve(old.id).lookup_key is None

    with pytest.raises(stripe.InvalidRequestError) as immutable:
        client.v1.prices.update(new.id, params={"unit_amount": 1})
    assert immutable.value.param == "unit_amount"
    assert client.v1.prices.update(new.id, params={"active": False}).active is False


def test_metered_price_needs_an_existing_meter(client, meter):
    client.v1.products.create(params={"id": "overage", "name": "Overage"})
    metered = {"product": "overage", "currency": "usd", "unit_amount_decimal": "0.05"}
    with pytest.raises(stripe.InvalidRequestError) as no_meter:
        client.v1.prices.create(
            params={**metered, "recurring": {"interval": "month", "usage_type": "metered"}}
        )
    assert no_meter.value.param == "recurring[meter]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.prices.create(
            params={
                **metered,
                "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_nope"},
            }
        )
    assert unknown.value.code == "resource_missing"

    price = client.v1.prices.create(
        params={
            **metered,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "transform_quantity": {"divide_by": 1000, "round": "up"},
        }
    )
    assert (price.recurring.meter, price.recurring.usage_type) == (meter.id, "metered")
    assert (price.unit_amount, price.unit_amount_decimal) == (
        None,
        Decimal("0.05"),
    )  # stripe makes it a Decimal
    assert price.transform_quantity.to_dict() == {"divide_by": 1000, "round": "up"}


def test_meter_event_names_are_unique_among_active_meters(client, meter):
    again = {"display_name": "Again", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meters.create(params=again)
    client.v1.billing.meters.deactivate(meter.id)
    assert client.v1.billing.meters.create(params=again).status == "active"
    assert [m.id for m in client.v1.billing.meters.list(params={"status": "inactive"}).data] == [meter.id]


def test_meter_events_are_stored_and_a_duplicate_identifier_is_refused(client, stripe_env, customer, meter):
    stripe_env.clock(NOW)
    event = send_event(client, customer.id, "12", identifier="req-1")
    assert (event.identifier, event.timestamp, event.payload["value"]) == ("req-1", NOW, "12")

    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        send_event(client, customer.id, "99", identifier="req-1")
    assert duplicate.value.code == "resource_already_exists"
    assert "already exists" in str(duplicate.value)

    generated = send_event(client, customer.id, "3")
    assert generated.identifier and generated.identifier != "req-1"
    stored = stripe_env.meter_events()
    assert [
        (e["identifier"], e["customer"], e["value"], e["received_at"], e["canceled"]) for e in stored
    ] == [
        ("req-1", customer.id, 12, NOW, False),
        (generated.identifier, customer.id, 3, NOW, False),
    ]


@pytest.mark.parametrize("value", ["1.5", "-3", "ten", ""])
def test_meter_event_value_must_be_a_non_negative_whole_number(client, stripe_env, customer, meter, value):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        send_event(client, customer.id, value)
    assert raised.value.param == "payload[value]"
    assert stripe_env.meter_events() == []


def test_meter_event_needs_an_active_meter_and_a_live_customer(client, stripe_env, customer, meter):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meter_events.create(
            params={
                "event_name": "nobody_meters_this",
                "payload": {"stripe_customer_id": customer.id, "value": "1"},
            }
        )
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        send_event(client, "cus_nope", "1")
    assert unknown.value.param == "payload[stripe_customer_id]"
    client.v1.customers.delete(customer.id)
    with pytest.raises(stripe.InvalidRequestError):
        send_event(client, customer.id, "1")
    assert stripe_env.meter_events() == []


def test_meter_event_timestamp_window_follows_the_clock(client, stripe_env, customer, meter):
    stripe_env.clock(NOW)
    for refused in (NOW - 35 * DAY - 1, NOW + 301):
        with pytest.raises(stripe.InvalidRequestError) as raised:
            send_event(client, customer.id, "1", timestamp=refused)
        assert raised.value.param == "timestamp"
    send_event(client, customer.id, "1", timestamp=NOW - 35 * DAY)
    send_event(client, customer.id, "1", timestamp=NOW + 300)
    assert [e["timestamp"] for e in stripe_env.meter_events()] == [NOW - 35 * DAY, NOW + 300]


def test_cancel_adjustment_works_within_24_hours_of_receipt_only(client, stripe_env, customer, meter):
    stripe_env.clock(NOW)
    send_event(client, customer.id, "5", identifier="early")
    stripe_env.clock(NOW + 3600)
    send_event(client, customer.id, "7", identifier="late")

    def cancel(identifier: str) -> stripe.billing.MeterEventAdjustment:
        return client.v1.billing.meter_event_adjustments.create(
            params={"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": identifier}}
        )

    stripe_env.clock(NOW + DAY + 1)  # "early" is 24 h + 1 s old, "late" 23 h
    adjustment = cancel("late")
    assert (adjustment.status, adjustment.cancel.identifier) == ("complete", "late")
    with pytest.raises(stripe.InvalidRequestError):
        cancel("late")  # already canceled
    with pytest.raises(stripe.InvalidRequestError):
        cancel("early")
    with pytest.raises(stripe.InvalidRequestError):
        cancel("never-sent")
    assert {e["identifier"]: e["canceled"] for e in stripe_env.meter_events()} == {
        "early": False,
        "late": True,
    }


def test_event_summaries_sum_by_hour_and_leave_out_canceled_events(client, stripe_env, customer, meter):
    other = client.v1.customers.create(params={"email": "bob@example.com"})
    stripe_env.clock(NOW + 4 * 3600)
    for offset, value, who in [
        (10, "5", customer.id),
        (20, "7", customer.id),
        (3600 + 5, "11", customer.id),
        (7200 + 1, "100", customer.id),  # canceled below
        (30, "1000", other.id),
        (3 * 3600, "10000", customer.id),  # at end_time: outside [start, end)
    ]:
        send_event(client, who, value, timestamp=NOW + offset, identifier=f"{who}-{offset}")
    client.v1.billing.meter_event_adjustments.create(
        params={"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": f"{customer.id}-7201"}}
    )
    window = {"customer": customer.id, "start_time": NOW, "end_time": NOW + 3 * 3600}

    whole = client.v1.billing.meters.event_summaries.list(meter.id, params=window).data
    assert [(s.aggregated_value, s.start_time, s.end_time) for s in whole] == [(23.0, NOW, NOW + 3 * 3600)]

    hourly = client.v1.billing.meters.event_summaries.list(
        meter.id, params={**window, "value_grouping_window": "hour"}
    )
    assert [(s.start_time, s.aggregated_value) for s in hourly.data] == [(NOW + 3600, 11.0), (NOW, 12.0)]
    assert {s.meter for s in hourly.data} == {meter.id}

    first = client.v1.billing.meters.event_summaries.list(
        meter.id, params={**window, "value_grouping_window": "hour", "limit": 1}
    )
    rest = client.v1.billing.meters.event_summaries.list(
        meter.id, params={**window, "value_grouping_window": "hour", "starting_after": first.data[0].id}
    )
    assert (first.has_more, [s.start_time for s in rest.data], rest.has_more) == (True, [NOW], False)

    with pytest.raises(stripe.InvalidRequestError) as unaligned:
        client.v1.billing.meters.event_summaries.list(meter.id, params={**window, "start_time": NOW + 30})
    assert unaligned.value.param == "start_time"


def _plan_prices(client: stripe.StripeClient, meter_id: str) -> tuple[str, str]:
    client.v1.products.create(params={"id": "candlestack_pro", "name": "Pro"})
    base = {"product": "candlestack_pro", "currency": "usd"}
    licensed = client.v1.prices.create(
        params={**base, "unit_amount": 4900, "recurring": {"interval": "month"}}
    )
    metered = client.v1.prices.create(
        params={
            **base,
            "unit_amount_decimal": "0.05",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        }
    )
    return licensed.id, metered.id


def test_checkout_session_for_a_subscription_with_a_metered_price(client, stripe_env, customer, meter):
    licensed, metered = _plan_prices(client, meter.id)
    request = {
        "mode": "subscription",
        "customer": customer.id,
        "success_url": "https://portal.example/billing/done",
        "cancel_url": "https://portal.example/billing",
        "client_reference_id": "org-42",
        "metadata": {"organization": "42"},
        "subscription_data": {"metadata": {"organization": "42", "plan": "pro"}},
    }
    with pytest.raises(stripe.InvalidRequestError) as with_quantity:
        client.v1.checkout.sessions.create(
            params={
                **request,
                "line_items": [{"price": licensed, "quantity": 1}, {"price": metered, "quantity": 1}],
            }
        )
    assert with_quantity.value.param == "line_items[1][quantity]"
    with pytest.raises(stripe.InvalidRequestError) as without_quantity:
        client.v1.checkout.sessions.create(params={**request, "line_items": [{"price": licensed}]})
    assert without_quantity.value.param == "line_items[0][quantity]"

    session = client.v1.checkout.sessions.create(
        params={**request, "line_items": [{"price": licensed, "quantity": 1}, {"price": metered}]}
    )
    assert session.id.startswith("cs_test_")
    assert session.url == f"{stripe_env.base}/pay/{session.id}"
    assert (session.status, session.mode, session.customer, session.subscription) == (
        "open",
        "subscription",
        customer.id,
        None,
    )
    assert (session.client_reference_id, session.metadata.to_dict()) == ("org-42", {"organization": "42"})
    assert session.expires_at == session.created + DAY
    sent = stripe_env.objects("checkout_sessions")[0]
    assert [(line["price"]["id"], line["quantity"]) for line in sent["line_items"]["data"]] == [
        (licensed, 1),
        (metered, None),
    ]
    assert httpx.get(session.url).status_code == 200

    completed = stripe_env.complete_checkout(session.id)
    subscription = client.v1.subscriptions.retrieve(completed["subscription"]["id"])
    assert (subscription.customer, subscription.status) == (customer.id, "active")
    assert subscription.metadata.to_dict() == {"organization": "42", "plan": "pro"}
    assert [(i.price.id, i.quantity) for i in subscription["items"].data] == [(licensed, 1), (metered, None)]
    assert client.v1.checkout.sessions.retrieve(session.id).subscription == subscription.id


def test_checkout_session_refuses_an_unknown_customer_or_an_archived_price(client, customer, meter):
    licensed, _ = _plan_prices(client, meter.id)
    request = {"mode": "subscription", "success_url": "https://portal.example/done"}
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.checkout.sessions.create(
            params={**request, "customer": "cus_nope", "line_items": [{"price": licensed, "quantity": 1}]}
        )
    assert unknown.value.param == "customer"
    client.v1.prices.update(licensed, params={"active": False})
    with pytest.raises(stripe.InvalidRequestError) as archived:
        client.v1.checkout.sessions.create(
            params={**request, "customer": customer.id, "line_items": [{"price": licensed, "quantity": 1}]}
        )
    assert archived.value.param == "line_items[0][price]"


def test_billing_portal_session(client, stripe_env, customer):
    session = client.v1.billing_portal.sessions.create(
        params={"customer": customer.id, "return_url": "https://portal.example/billing"}
    )
    assert session.id.startswith("bps_")
    assert session.url == f"{stripe_env.base}/portal/{session.id}"
    assert (session.customer, session.return_url) == (customer.id, "https://portal.example/billing")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing_portal.sessions.create(params={"customer": "cus_nope"})


def test_subscriptions_made_by_the_control_api_list_by_status(client, stripe_env, customer, meter):
    licensed, metered = _plan_prices(client, meter.id)
    created = stripe_env.create_subscription(
        customer=customer.id,
        items=[{"price": licensed, "quantity": 1}, {"price": metered}],
        metadata={"organization": "42"},
        current_period_start=NOW,
    )
    assert created["object"] == "subscription"
    assert created["current_period_end"] == NOW + 31 * DAY  # one month from 15 January
    assert created["items"]["data"][1]["price"]["recurring"]["meter"] == meter.id
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": customer.id}).data] == [
        created["id"]
    ]

    updated = stripe_env.update_subscription(
        created["id"], status="canceled", canceled_at=NOW + 60, ended_at=NOW + 60
    )
    assert (updated["status"], updated["ended_at"]) == ("canceled", NOW + 60)
    assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "all"}).data] == [created["id"]]
    assert client.v1.subscriptions.retrieve(created["id"]).status == "canceled"


def test_invoices_list_newest_first_and_paginate(client, stripe_env, customer):
    stripe_env.clock(NOW)
    made = []
    for n in range(5):
        stripe_env.clock(NOW + n)
        made.append(
            stripe_env.create_invoice(customer=customer.id, status="paid", amount_due=100 * (n + 1))["id"]
        )
    newest_first = made[::-1]

    first = client.v1.invoices.list(params={"customer": customer.id, "limit": 2})
    assert ([i.id for i in first.data], first.has_more) == (newest_first[:2], True)
    second = client.v1.invoices.list(
        params={"customer": customer.id, "limit": 2, "starting_after": first.data[-1].id}
    )
    assert ([i.id for i in second.data], second.has_more) == (newest_first[2:4], True)
    last = client.v1.invoices.list(
        params={"customer": customer.id, "limit": 2, "starting_after": second.data[-1].id}
    )
    assert ([i.id for i in last.data], last.has_more) == (newest_first[4:], False)
    assert [i.id for i in client.v1.invoices.list(params={"limit": 2}).auto_paging_iter()] == newest_first
    before = client.v1.invoices.list(params={"limit": 2, "ending_before": newest_first[4]})
    assert ([i.id for i in before.data], before.has_more) == (newest_first[2:4], True)

    invoice = client.v1.invoices.retrieve(made[0])
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (100, 100, 0)
    assert invoice.hosted_invoice_url == f"{stripe_env.base}/invoice/{invoice.id}"
    assert client.v1.invoices.list(params={"status": "open"}).data == []


def test_fault_error_answers_500_api_error_for_its_path_and_count(client, stripe_env, customer):
    stripe_env.faults(mode="error", path_prefix="/v1/billing_portal", count=1)
    client.v1.customers.retrieve(customer.id)  # another path: unaffected
    with pytest.raises(stripe.APIError) as raised:
        client.v1.billing_portal.sessions.create(params={"customer": customer.id})
    assert raised.value.http_status == 500
    client.v1.billing_portal.sessions.create(params={"customer": customer.id})  # count used up
    assert [r["status"] for r in stripe_env.requests()][-2:] == [500, 200]


def test_fault_slow_makes_a_client_with_a_shorter_timeout_give_up(stripe_env):
    impatient = stripe_env.stripe_client(timeout=1)
    stripe_env.faults(mode="slow", delay=3, count=1)
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.list()
    impatient.v1.customers.list()  # the fault was for one request


def test_fault_down_closes_the_connection_unanswered(client, stripe_env):
    stripe_env.faults(mode="down")
    with pytest.raises(stripe.APIConnectionError):
        client.v1.customers.create(params={"email": "ada@example.com"})
    stripe_env.faults(mode="ok")
    client.v1.customers.create(params={"email": "ada@example.com"})
    assert len(stripe_env.objects("customers")) == 1


def test_webhook_signature_is_accepted_by_the_stripe_library():
    secret = "whsec_test_candlestack"
    envelope = webhooks.event(
        "customer.subscription.updated",
        {"id": "sub_1", "object": "subscription", "status": "past_due"},
        previous_attributes={"status": "active"},
    )
    payload = json.dumps(envelope).encode()

    verified = stripe.Webhook.construct_event(
        payload, webhooks.signature_header(payload, secret), secret, tolerance=300
    )
    assert (verified.id, verified.type, verified.data.object.status) == (
        envelope["id"],
        "customer.subscription.updated",
        "past_due",
    )
    assert verified.data.previous_attributes.status == "active"

    tampered = payload.replace(b"past_due", b"active!!")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            tampered, webhooks.signature_header(payload, secret), secret, tolerance=300
        )
    stale = webhooks.signature_header(payload, secret, timestamp=int(verified.created) - 301)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, secret, tolerance=300)
