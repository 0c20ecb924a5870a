"""The alerts API under /v1/account/ (JWT management API; docs/alerts.md). Thin: parse, call a
service or selector, shape the answer.

Tenant scoping is accounts' (``accounts.tenancy.OrganizationScopedView``: the caller's organization,
fail closed, another tenant's object is a 404); this module is marketdata's one arrow into accounts,
allowed by name in pyproject.toml's ``marketdata-arrows`` contract.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts import roles
from accounts.schema import problem
from accounts.tenancy import OrganizationScopedView
from marketdata import selectors as market
from marketdata.alerts import problems as p
from marketdata.alerts import schema as _schema  # noqa: F401  # registers the condition oneOf extensions
from marketdata.alerts import selectors, services
from marketdata.alerts import serializers as s
from marketdata.alerts.models import Alert, Delivery, WebhookEndpoint

TAG = "alerts"
PRICE_EXAMPLE = {
    "coin": "bitcoin",
    "name": "BTC above 100k",
    "condition": {"type": "price", "direction": "above", "level": 100000},
    "webhook_url": "https://hooks.example.com/candlestack",
    "cooldown_seconds": 3600,
}
RSI_EXAMPLE = {
    "coin": "ethereum",
    "condition": {
        "type": "indicator",
        "indicator": "rsi",
        "timeframe": "1h",
        "direction": "above",
        "level": 70,
    },
    "endpoint_id": 1,
}


class AlertsView(OrganizationScopedView):
    """Base of the alerts views: the organization's objects only."""

    def _alert(self, alert_id: int) -> Alert:
        return self.get_scoped_object(Alert.objects.select_related("coin"), pk=alert_id)

    def _endpoint(self, endpoint_id: int, *, field: str | None = None) -> WebhookEndpoint:
        endpoint = self.scoped(WebhookEndpoint.objects.all()).filter(pk=endpoint_id).first()
        if endpoint is None:
            if field:  # named in a body: a validation error, not a missing URL
                raise serializers.ValidationError({field: "no such webhook endpoint in this organization"})
            return self.get_scoped_object(WebhookEndpoint.objects.all(), pk=endpoint_id)
        return endpoint

    def _delivery(self, delivery_id: int) -> Delivery:
        return self.get_scoped_object(Delivery.objects.all(), pk=delivery_id)


def _coin_id(upstream_id: str) -> int:
    coin_id = market.coin_refs([upstream_id]).get(upstream_id)
    if coin_id is None:
        raise serializers.ValidationError({"coin": f"unknown coin id {upstream_id!r} (see GET /v1/coins)"})
    return coin_id


class AlertListView(AlertsView):
    required_permissions = {"GET": roles.ALERTS_READ, "POST": roles.ALERTS_MANAGE}

    @extend_schema(
        operation_id="alerts_list",
        tags=[TAG],
        summary="The organization's alerts, with their state (side of the level, last firing)",
        responses={200: s.AlertOut(many=True)},
    )
    def get(self, request):
        alerts = self.scoped(selectors.alerts_of(organization_id=self.organization.pk))
        return Response(s.AlertOut(alerts, many=True).data)

    @extend_schema(
        operation_id="alert_create",
        tags=[TAG],
        summary="Create an alert: a condition on a coin, delivered to a webhook",
        description=(
            "The alert fires when its value **crosses** the level towards `direction` (once per "
            "crossing; never on creation: the first value only sets the side), at most once per "
            "`cooldown_seconds`. It is evaluated after every ingestion refresh (about every minute). "
            "Give `endpoint_id` (one of your webhook endpoints) or `webhook_url`: a new endpoint is "
            "created for a new URL and its signing secret is in `webhook_secret`, shown only in this "
            "answer. See docs/alerts.md for the payload and the signature."
        ),
        request=s.AlertIn,
        responses={
            201: s.AlertCreatedOut,
            400: p.WEBHOOK_URL_REFUSED,
            409: p.ALERT_LIMIT_REACHED,
        },
        examples=[
            OpenApiExample("Price crosses above", value=PRICE_EXAMPLE, request_only=True),
            OpenApiExample("RSI above 70 on 1h candles", value=RSI_EXAMPLE, request_only=True),
        ],
    )
    def post(self, request):
        data = s.AlertIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        coin_id = _coin_id(values["coin"])
        endpoint = None
        if "endpoint_id" in values:
            endpoint = self._endpoint(values["endpoint_id"], field="endpoint_id")
        alert, secret = services.alert_create_for_webhook(
            organization_id=self.organization.pk,
            coin_id=coin_id,
            condition=values["condition"],
            endpoint=endpoint,
            webhook_url=values.get("webhook_url"),
            name=values["name"],
            cooldown_seconds=values["cooldown_seconds"],
        )
        alert = self._alert(alert.pk)
        body = {**s.AlertOut(alert).data, "webhook_secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class AlertDetailView(AlertsView):
    required_permissions = {
        "GET": roles.ALERTS_READ,
        "PATCH": roles.ALERTS_MANAGE,
        "DELETE": roles.ALERTS_MANAGE,
    }

    @extend_schema(operation_id="alert", tags=[TAG], summary="One alert", responses={200: s.AlertOut})
    def get(self, request, alert_id: int):
        return Response(s.AlertOut(self._alert(alert_id)).data)

    @extend_schema(
        operation_id="alert_update",
        tags=[TAG],
        summary="Change an alert (a new condition, or re-activation, starts from a fresh state)",
        request=s.AlertPatchIn,
        responses={200: s.AlertOut},
    )
    def patch(self, request, alert_id: int):
        alert = self._alert(alert_id)
        data = s.AlertPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        endpoint_id = values.pop("endpoint_id", None)
        endpoint = self._endpoint(endpoint_id, field="endpoint_id") if endpoint_id else None
        services.alert_update(alert=alert, endpoint=endpoint, **values)
        return Response(s.AlertOut(self._alert(alert_id)).data)

    @extend_schema(
        operation_id="alert_delete",
        tags=[TAG],
        summary="Delete an alert (its past deliveries stay listed)",
        responses={204: None},
    )
    def delete(self, request, alert_id: int):
        services.alert_delete(alert=self._alert(alert_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointListView(AlertsView):
    required_permissions = {"GET": roles.ALERTS_READ, "POST": roles.ALERTS_MANAGE}

    @extend_schema(
        operation_id="webhook_endpoints_list",
        tags=[TAG],
        summary="Webhook endpoints of the organization (never their secrets)",
        responses={200: s.EndpointOut(many=True)},
    )
    def get(self, request):
        endpoints = self.scoped(selectors.endpoints_of(organization_id=self.organization.pk))
        return Response(s.EndpointOut(endpoints, many=True).data)

    @extend_schema(
        operation_id="webhook_endpoint_create",
        tags=[TAG],
        summary="Create a webhook endpoint. The answer holds its signing secret: shown only once",
        request=s.EndpointIn,
        responses={201: s.EndpointSecretOut, 400: p.WEBHOOK_URL_REFUSED},
        examples=[
            OpenApiExample(
                "Endpoint",
                value={"url": "https://hooks.example.com/candlestack", "description": "bot"},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        data = s.EndpointIn(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(organization_id=self.organization.pk, **data.validated_data)
        return Response(s.EndpointSecretOut(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(AlertsView):
    required_permissions = {
        "GET": roles.ALERTS_READ,
        "PATCH": roles.ALERTS_MANAGE,
        "DELETE": roles.ALERTS_MANAGE,
    }

    @extend_schema(operation_id="webhook_endpoint", tags=[TAG], summary="One webhook endpoint",
                   responses={200: s.EndpointOut})  # fmt: skip
    def get(self, request, endpoint_id: int):
        return Response(s.EndpointOut(self._endpoint(endpoint_id)).data)

    @extend_schema(
        operation_id="webhook_endpoint_update",
        tags=[TAG],
        summary="Change a webhook endpoint's URL or description (the secret stays)",
        request=s.EndpointPatchIn,
        responses={200: s.EndpointOut, 400: p.WEBHOOK_URL_REFUSED},
    )
    def patch(self, request, endpoint_id: int):
        endpoint = self._endpoint(endpoint_id)
        data = s.EndpointPatchIn(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(s.EndpointOut(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoint_delete",
        tags=[TAG],
        summary="Delete a webhook endpoint and its delivery history (refused while alerts use it)",
        responses={204: None, 409: p.WEBHOOK_ENDPOINT_IN_USE},
    )
    def delete(self, request, endpoint_id: int):
        services.endpoint_delete(endpoint=self._endpoint(endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(AlertsView):
    required_permissions = {"POST": roles.ALERTS_MANAGE}

    @extend_schema(
        operation_id="webhook_endpoint_rotate_secret",
        tags=[TAG],
        summary="A new signing secret for the endpoint, used from now on: shown only in this answer",
        request=None,
        responses={200: s.EndpointSecretOut},
    )
    def post(self, request, endpoint_id: int):
        endpoint = services.endpoint_rotate_secret(endpoint=self._endpoint(endpoint_id))
        return Response(s.EndpointSecretOut(endpoint).data)


class EndpointTestView(AlertsView):
    required_permissions = {"POST": roles.ALERTS_MANAGE}

    @extend_schema(
        operation_id="webhook_endpoint_test",
        tags=[TAG],
        summary="Send a signed `webhook.test` event now and answer with the attempt (no retries)",
        description=(
            "Records a delivery of type `webhook.test`, makes one attempt while you wait (at most "
            "`ALERTS_WEBHOOK_TIMEOUT`, 10 s) and answers with the delivery and its attempt: status "
            "code, latency, the start of the response, or the error (a refused address, a redirect, a "
            "timeout). A failed test delivery is not retried."
        ),
        request=None,
        responses={200: s.DeliveryDetailOut},
    )
    def post(self, request, endpoint_id: int):
        delivery = services.delivery_send_test(endpoint=self._endpoint(endpoint_id))
        return Response(s.DeliveryDetailOut(self._delivery(delivery.pk)).data)


class DeliveryListView(AlertsView):
    required_permissions = {"GET": roles.ALERTS_READ}

    @extend_schema(
        operation_id="deliveries_list",
        tags=[TAG],
        summary="Webhook deliveries, newest first (filter by alert, endpoint, status)",
        parameters=[s.DeliveryQuery],
        responses={200: s.DeliveryPageOut},
    )
    def get(self, request):
        query = s.DeliveryQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows = selectors.deliveries_of(
            organization_id=self.organization.pk,
            alert_id=q.get("alert"),
            endpoint_id=q.get("endpoint"),
            status=q.get("status"),
            before_id=q.get("before"),
            limit=q["limit"],
        )
        next_before = rows[-1].pk if len(rows) == q["limit"] else None
        return Response({"results": s.DeliveryOut(rows, many=True).data, "next_before": next_before})


class DeliveryDetailView(AlertsView):
    required_permissions = {"GET": roles.ALERTS_READ}

    @extend_schema(
        operation_id="delivery",
        tags=[TAG],
        summary="One delivery: its payload and every attempt (status, latency, response excerpt)",
        responses={200: s.DeliveryDetailOut},
    )
    def get(self, request, delivery_id: int):
        return Response(s.DeliveryDetailOut(self._delivery(delivery_id)).data)


class DeliveryReplayView(AlertsView):
    required_permissions = {"POST": roles.ALERTS_MANAGE}

    @extend_schema(
        operation_id="delivery_replay",
        tags=[TAG],
        summary="Send a delivery again (same event id and body, new signature): one attempt, queued",
        description=(
            "For a `dead` delivery (every scheduled attempt failed), or to send any finished one again. "
            "The attempt is made by a worker within seconds and recorded like the others "
            "(`manual: true`); a replay that fails is not retried."
        ),
        request=None,
        responses={
            202: s.DeliveryOut,
            409: problem(p.DELIVERY_NOT_REPLAYABLE, "The first attempt has not been made yet."),
        },
    )
    def post(self, request, delivery_id: int):
        delivery = services.delivery_replay(delivery=self._delivery(delivery_id))
        return Response(s.DeliveryOut(delivery).data, status=status.HTTP_202_ACCEPTED)
