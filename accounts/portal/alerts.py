"""The alerts page: the organization's alerts with their state, creating one (a new endpoint's signing
secret shown once), pause/resume, delete with a confirmation, webhook endpoints with "send test", and
the recent deliveries with "replay" (docs/alerts.md, docs/portal.md).

Every read and write is the management API's (``marketdata.alerts.selectors`` / ``services``, the
condition checked by the API's ``ConditionIn``); the page only gathers fields and shows answers.
Reading needs ``alerts.read``, changing ``alerts.manage`` (what a role may not do is not offered)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from rest_framework import exceptions as drf

from accounts import roles
from accounts.portal.errors import error_page, field_errors, sentence
from accounts.portal.forms import AlertCreateForm
from accounts.portal.tenancy import PortalRequest, portal_page
from apiplatform.problems import ProblemError
from marketdata import selectors as market
from marketdata.alerts import conditions, selectors, services
from marketdata.alerts import problems as alert_problems
from marketdata.alerts.models import Alert, WebhookEndpoint
from marketdata.alerts.serializers import ConditionIn
from marketdata.models import TIMEFRAMES

RECENT_DELIVERIES = 20
_INDICATOR_LABELS = {
    "rsi": "RSI (14)",
    "macd": "MACD line (12, 26, 9)",
    "macd_signal_cross": "MACD crosses its signal line",
}


@dataclass
class AlertRow:
    alert: Alert
    condition: str


def describe(alert: Any) -> str:
    """The condition in words, e.g. "price above 100000", "1h change below -5 %"."""
    c = conditions.condition_of(alert)
    level = f"{c['level']:g}"
    if c["type"] == "price":
        return f"price {c['direction']} {level} USD"
    if c["type"] == "change":
        return f"{c['window']} change {c['direction']} {level} %"
    name = _INDICATOR_LABELS.get(c["indicator"], c["indicator"])
    if c["indicator"] in conditions.FIXED_LEVEL:
        return f"{name} on {c['timeframe']} candles, crossing {c['direction']}"
    return f"{name} on {c['timeframe']} candles {c['direction']} {level}"


def _form(request: PortalRequest, endpoints: list[WebhookEndpoint]) -> AlertCreateForm:
    return AlertCreateForm(
        request.POST if request.method == "POST" else None,
        kinds=[(k.value, k.label) for k in Alert.Kind],
        windows=[(w, w) for w in conditions.WINDOWS],
        indicators=[(name, _INDICATOR_LABELS.get(name, name)) for name in conditions.INDICATORS],
        timeframes=[(tf, tf) for tf in TIMEFRAMES],
        endpoints=[(str(e.pk), e.description or e.url) for e in endpoints],
    )


def _endpoints(request: PortalRequest) -> list[WebhookEndpoint]:
    return list(selectors.endpoints_of(organization_id=request.portal.organization.pk).order_by("pk"))


def _alert(request: PortalRequest, alert_id: int) -> Alert | None:
    return selectors.alerts_of(organization_id=request.portal.organization.pk).filter(pk=alert_id).first()


def _page(request: PortalRequest, form: AlertCreateForm, endpoints: list[WebhookEndpoint], *,
          status: int = 200, message: str = "") -> HttpResponse:  # fmt: skip
    organization_id = request.portal.organization.pk
    alerts = selectors.alerts_of(organization_id=organization_id).select_related("endpoint").order_by("-pk")
    by_id = {e.pk: e for e in endpoints}
    deliveries = selectors.deliveries_of(organization_id=organization_id, limit=RECENT_DELIVERIES)
    context = {
        "form": form,
        "alerts": [AlertRow(a, describe(a)) for a in alerts],
        "endpoints": endpoints,
        "deliveries": [(d, by_id.get(d.endpoint_id)) for d in deliveries],
        "message": message,
    }
    return render(request, "portal/alerts.html", context, status=status)


@never_cache
@portal_page(read=roles.ALERTS_READ, write=roles.ALERTS_MANAGE)
def alerts(request: PortalRequest) -> HttpResponse:
    endpoints = _endpoints(request)
    form = _form(request, endpoints)
    if request.method == "POST" and form.is_valid():
        response = _create(request, form, endpoints)
        if response is not None:
            return response
    return _page(request, form, endpoints, status=400 if request.method == "POST" else 200)


def _create(
    request: PortalRequest, form: AlertCreateForm, endpoints: list[WebhookEndpoint]
) -> HttpResponse | None:
    """Create the alert the form describes; None (errors on the form) when refused."""
    data = form.cleaned_data
    condition = ConditionIn(data=form.condition())
    if not condition.is_valid():
        field_errors(form, drf.ValidationError(condition.errors))
        return None
    coin_id = market.coin_refs([data["coin"].strip()]).get(data["coin"].strip())
    if coin_id is None:
        form.add_error(
            "coin", f"Unknown coin id “{data['coin']}”: use the id of GET /v1/coins, e.g. bitcoin."
        )
        return None
    endpoint = (
        next((e for e in endpoints if str(e.pk) == data["endpoint"]), None) if data["endpoint"] else None
    )
    try:
        alert, secret = services.alert_create_for_webhook(
            organization_id=request.portal.organization.pk,
            coin_id=coin_id,
            condition=condition.validated_data,
            endpoint=endpoint,
            webhook_url=None if endpoint else data["webhook_url"].strip(),
            name=data["name"],
            cooldown_seconds=int(data["cooldown_seconds"]),
        )
    except ProblemError as exc:
        form.add_error(
            "webhook_url" if exc.problem is alert_problems.WEBHOOK_URL_REFUSED else None, sentence(exc)
        )
        return None
    if secret is None:
        return redirect(reverse("portal:alerts") + f"?created={alert.pk}")
    response = render(
        request, "portal/alert_secret.html", {"alert": alert, "endpoint": alert.endpoint, "secret": secret}
    )
    response["Cache-Control"] = "no-store"
    return response


@portal_page(read=roles.ALERTS_MANAGE, write=roles.ALERTS_MANAGE)
def alert_active(request: PortalRequest, alert_id: int, *, active: bool) -> HttpResponse:
    """Pause (``active=False``) or resume an alert: a POST (a GET shows the page)."""
    alert = _alert(request, alert_id)
    if alert is None:
        return error_page(request, "No such alert in this organization.", status=404)
    if request.method != "POST":
        return redirect("portal:alerts")
    services.alert_update(alert=alert, active=active)
    return redirect(reverse("portal:alerts") + f"?{'resumed' if active else 'paused'}={alert.pk}")


@portal_page(read=roles.ALERTS_MANAGE, write=roles.ALERTS_MANAGE)
def alert_delete(request: PortalRequest, alert_id: int) -> HttpResponse:
    alert = _alert(request, alert_id)
    if alert is None:
        return error_page(request, "No such alert in this organization.", status=404)
    if request.method == "POST":
        services.alert_delete(alert=alert)
        return redirect(reverse("portal:alerts") + "?deleted=1")
    context = {"alert": alert, "condition": describe(alert)}
    template = "portal/alert_delete_panel.html" if request.htmx else "portal/alert_delete.html"
    return render(request, template, context)


@portal_page(read=roles.ALERTS_MANAGE, write=roles.ALERTS_MANAGE)
def endpoint_test(request: PortalRequest, endpoint_id: int) -> HttpResponse:
    """Send a signed ``webhook.test`` event now and show the attempt (one, while the person waits)."""
    endpoint = (
        selectors.endpoints_of(organization_id=request.portal.organization.pk).filter(pk=endpoint_id).first()
    )
    if endpoint is None:
        return error_page(request, "No such webhook endpoint in this organization.", status=404)
    if request.method != "POST":
        return redirect("portal:alerts")
    delivery = services.delivery_send_test(endpoint=endpoint)
    attempt = next(iter(selectors.attempts_of(delivery_id=delivery.pk)), None)
    context = {"endpoint": endpoint, "delivery": delivery, "attempt": attempt}
    template = "portal/endpoint_test_panel.html" if request.htmx else "portal/endpoint_test.html"
    return render(request, template, context)


@portal_page(read=roles.ALERTS_MANAGE, write=roles.ALERTS_MANAGE)
def delivery_replay(request: PortalRequest, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_of(organization_id=request.portal.organization.pk, delivery_id=delivery_id)
    if delivery is None:
        return error_page(request, "No such delivery in this organization.", status=404)
    if request.method != "POST":
        return redirect("portal:alerts")
    try:
        services.delivery_replay(delivery=delivery)
    except ProblemError as exc:
        return error_page(request, sentence(exc), status=409)
    return redirect(reverse("portal:alerts") + f"?replayed={delivery.pk}#deliveries-h")
