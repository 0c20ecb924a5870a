"""The billing page: plan, usage and overage so far, upgrade (Stripe Checkout), manage payment and
cancel (Stripe Customer Portal), invoices. Through billing.subscriptions; nothing is granted here
(Stripe's webhook does that). Without ``STRIPE_SECRET_KEY`` the page says billing is not configured."""

from __future__ import annotations

import logging

from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from accounts import roles
from accounts.portal.errors import error_page
from accounts.portal.tenancy import PortalRequest, portal_page
from billing import stripe_api, subscriptions
from billing.models import Plan

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "Billing is not configured on this server: plans cannot be bought here."
UNAVAILABLE = "Stripe could not be reached just now. Nothing was charged; try again in a minute."


@portal_page(read=roles.BILLING_READ)
def billing(request: PortalRequest) -> HttpResponse:
    organization = request.portal.organization
    configured = stripe_api.configured()
    invoices: list[dict] = []
    invoices_error = ""
    if configured:
        try:
            invoices, _more = subscriptions.invoices_list(
                organization=organization, limit=12, starting_after=None
            )
        except (stripe_api.StripeUnavailable, stripe_api.StripeRejected):
            invoices_error = UNAVAILABLE
    overview = subscriptions.overview(organization=organization)
    plans = Plan.objects.filter(is_public=True, price_cents_monthly__gt=0).order_by("sort_order")
    context = {
        "overview": overview,
        "configured": configured,
        "not_configured": NOT_CONFIGURED,
        "plans": plans,
        "invoices": invoices,
        "invoices_error": invoices_error,
        "checkout": request.GET.get("checkout", ""),
    }
    return render(request, "portal/billing.html", context)


def _stripe_redirect(request: PortalRequest, start) -> HttpResponse:
    if not stripe_api.configured():
        return error_page(request, NOT_CONFIGURED, status=503)
    try:
        url = start()["url"]
    except stripe_api.StripeUnavailable:
        return error_page(request, UNAVAILABLE, status=503)
    except (
        subscriptions.PlanNotPurchasable,
        subscriptions.SubscriptionExists,
        subscriptions.NoBillingAccount,
    ) as exc:
        message = str(exc).replace("POST /v1/account/billing/portal", "“Manage payment and plan”")
        message = message.replace("start with POST /v1/account/billing/checkout", "choose a plan first")
        return error_page(request, message, status=409)
    except stripe_api.StripeRejected:
        logger.exception("stripe refused a portal billing action")
        return error_page(
            request, "Stripe refused this request. Contact support with the request id.", status=502
        )
    return HttpResponseRedirect(url)


@portal_page(read=roles.BILLING_MANAGE, write=roles.BILLING_MANAGE)
def checkout(request: PortalRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect("/portal/billing")
    organization = request.portal.organization
    plan = request.POST.get("plan", "")
    return _stripe_redirect(
        request,
        lambda: subscriptions.checkout_start(organization=organization, plan_name=plan, actor=request.user),
    )


@portal_page(read=roles.BILLING_MANAGE, write=roles.BILLING_MANAGE)
def manage(request: PortalRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseRedirect("/portal/billing")
    organization = request.portal.organization
    return _stripe_redirect(
        request, lambda: subscriptions.portal_start(organization=organization, actor=request.user)
    )
