"""Stripe endpoints: the organization's billing (management API, JWT: reading needs ``billing.read``,
buying and the portal ``billing.manage``) and the
webhook (``POST /billing/stripe/webhook``: outside /v1, no key, no gateway).

Thin: the rules are in ``billing.subscriptions`` (customer, checkout, portal, state) and
``billing.webhooks`` (verify, store, apply)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts import roles
from accounts.schema import problem
from accounts.tenancy import OrganizationScopedView
from apiplatform.exceptions import problem_http_response
from apiplatform.problems import VALIDATION_ERROR, ProblemError
from apiplatform.query import QuerySerializer
from billing import problems as bp
from billing import stripe_api, subscriptions, webhooks

logger = logging.getLogger(__name__)

TAG = "billing"
_UNAVAILABLE = [
    problem(bp.BILLING_NOT_CONFIGURED, bp.BILLING_NOT_CONFIGURED.description),
    problem(bp.BILLING_UNAVAILABLE, "Stripe could not be reached in time; `Retry-After` says when to retry."),
]


class BillingView(OrganizationScopedView):
    """Billing endpoints: 503 ``billing-not-configured`` without Stripe, Stripe outages → 503 with
    ``Retry-After``."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not stripe_api.configured():
            raise ProblemError(bp.BILLING_NOT_CONFIGURED)

    def handle_exception(self, exc):
        if isinstance(exc, stripe_api.BillingNotConfigured):
            exc = ProblemError(bp.BILLING_NOT_CONFIGURED)
        elif isinstance(exc, stripe_api.StripeUnavailable):
            retry = str(stripe_api.RETRY_AFTER_SECONDS)
            exc = ProblemError(bp.BILLING_UNAVAILABLE, headers={"Retry-After": retry})
        return super().handle_exception(exc)


_MONEY = "Amount in the smallest currency unit (cents)."

BillingOverview = inline_serializer(
    "BillingOverview",
    {
        "organization": serializers.CharField(),
        "plan": inline_serializer(
            "BillingPlan",
            {
                "name": serializers.CharField(),
                "display_name": serializers.CharField(),
                "price_cents_monthly": serializers.IntegerField(help_text=_MONEY),
                "monthly_credits": serializers.IntegerField(help_text="Credits included per calendar month."),
            },
            help_text="The plan in force now (what the gateway enforces).",
        ),
        "subscription": inline_serializer(
            "BillingSubscription",
            {
                "id": serializers.CharField(help_text="Stripe subscription id."),
                "status": serializers.ChoiceField(
                    choices=[c for c, _ in subscriptions.S.choices], help_text="Stripe's subscription status."
                ),
                "plan": serializers.CharField(
                    allow_null=True, help_text="The plan the subscription pays for."
                ),
                "current_period_start": serializers.DateTimeField(allow_null=True),
                "current_period_end": serializers.DateTimeField(allow_null=True),
                "cancel_at_period_end": serializers.BooleanField(),
                "past_due_grace_ends_at": serializers.DateTimeField(
                    allow_null=True,
                    help_text="While `past_due`: the plan's limits are kept until then, then Free.",
                ),
            },
            allow_null=True,
            help_text="null when nothing was bought (the plan was assigned, e.g. Free).",
        ),
        "credits": inline_serializer(
            "BillingCredits",
            {
                "period": serializers.CharField(help_text="Calendar month (UTC), YYYY-MM."),
                "included": serializers.IntegerField(),
                "used": serializers.IntegerField(help_text="Metered credits (flushed every minute)."),
                "remaining": serializers.IntegerField(),
            },
        ),
        "overage": inline_serializer(
            "BillingOverage",
            {
                "allowed": serializers.BooleanField(
                    help_text="true: requests past the included credits are served and billed; false: "
                    "refused with `quota-exceeded`."
                ),
                "credits": serializers.IntegerField(help_text="Credits past the included ones this month."),
                "price_cents_per_1000": serializers.IntegerField(help_text="Per started 1,000 credits."),
                "amount_cents": serializers.IntegerField(help_text=_MONEY),
            },
        ),
        "next_invoice": inline_serializer(
            "BillingNextInvoice",
            {
                "at": serializers.DateTimeField(),
                "estimate_cents": serializers.IntegerField(
                    help_text="The plan's price plus the overage so far (our estimate; Stripe's invoice "
                    "adds taxes, credits and proration)."
                ),
                "currency": serializers.CharField(),
            },
            allow_null=True,
        ),
        "currency": serializers.CharField(),
    },
)


class BillingOverviewView(BillingView):
    required_permissions = {"GET": roles.BILLING_READ}

    @extend_schema(
        operation_id="account_billing",
        tags=[TAG],
        summary="Plan, subscription, credits, overage and next invoice",
        description="Answers from our own records (no call to Stripe). Subscription states: "
        "`active`/`trialing` give the plan's limits; `past_due` keeps them until "
        "`past_due_grace_ends_at`, then Free; `unpaid`/`canceled` mean Free.",
        responses={200: BillingOverview, 503: _UNAVAILABLE},
    )
    def get(self, request):
        return Response(subscriptions.overview(organization=self.organization))


class CheckoutIn(serializers.Serializer):
    plan = serializers.CharField(max_length=32, help_text="The plan to buy (`name` of a paid public plan).")


class BillingCheckoutView(BillingView):
    required_permissions = {"POST": roles.BILLING_MANAGE}

    @extend_schema(
        operation_id="account_billing_checkout",
        tags=[TAG],
        summary="Start buying a plan: a Stripe Checkout URL",
        description="Send the customer to `url` (Stripe Checkout, mode `subscription`). The redirect back "
        "grants nothing: the plan changes when Stripe confirms the subscription by webhook, usually "
        "within seconds. Invoices run per calendar month (UTC), like the credits; the first one is "
        "prorated.",
        request=CheckoutIn,
        responses={
            201: inline_serializer(
                "CheckoutSession",
                {
                    "id": serializers.CharField(),
                    "url": serializers.URLField(),
                    "expires_at": serializers.DateTimeField(allow_null=True),
                },
            ),
            400: problem(VALIDATION_ERROR, "`plan` missing, or not a paid plan on sale."),
            409: problem(bp.SUBSCRIPTION_EXISTS, bp.SUBSCRIPTION_EXISTS.description),
            503: _UNAVAILABLE,
        },
    )
    def post(self, request):
        data = CheckoutIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            session = subscriptions.checkout_start(
                organization=self.organization, plan_name=data.validated_data["plan"], actor=request.user
            )
        except subscriptions.PlanNotPurchasable as exc:
            raise serializers.ValidationError({"plan": [str(exc)]}) from exc
        except subscriptions.SubscriptionExists as exc:
            raise ProblemError(bp.SUBSCRIPTION_EXISTS, str(exc)) from exc
        return Response(session, status=status.HTTP_201_CREATED)


class BillingPortalView(BillingView):
    required_permissions = {"POST": roles.BILLING_MANAGE}

    @extend_schema(
        operation_id="account_billing_portal",
        tags=[TAG],
        summary="Manage payment, invoices, plan and cancellation: a Stripe Customer Portal URL",
        request=None,
        responses={
            201: inline_serializer("PortalSession", {"url": serializers.URLField()}),
            409: problem(bp.NO_BILLING_ACCOUNT, bp.NO_BILLING_ACCOUNT.description),
            503: _UNAVAILABLE,
        },
    )
    def post(self, request):
        try:
            session = subscriptions.portal_start(organization=self.organization, actor=request.user)
        except subscriptions.NoBillingAccount as exc:
            raise ProblemError(bp.NO_BILLING_ACCOUNT, str(exc)) from exc
        return Response(session, status=status.HTTP_201_CREATED)


class InvoicesQuery(QuerySerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    starting_after = serializers.CharField(
        required=False,
        max_length=255,
        help_text="Next page: the last invoice id of the previous page.",
    )


_invoice = inline_serializer(
    "Invoice",
    {
        "id": serializers.CharField(),
        "number": serializers.CharField(allow_blank=True),
        "status": serializers.CharField(help_text="draft, open, paid, uncollectible or void."),
        "currency": serializers.CharField(),
        "amount_due": serializers.IntegerField(help_text=_MONEY),
        "amount_paid": serializers.IntegerField(help_text=_MONEY),
        "created": serializers.DateTimeField(allow_null=True),
        "period_start": serializers.DateTimeField(allow_null=True),
        "period_end": serializers.DateTimeField(allow_null=True),
        "hosted_invoice_url": serializers.CharField(allow_blank=True),
        "invoice_pdf": serializers.CharField(allow_blank=True),
    },
)


class BillingInvoicesView(BillingView):
    required_permissions = {"GET": roles.BILLING_READ}

    @extend_schema(
        operation_id="account_billing_invoices",
        tags=[TAG],
        summary="The organization's invoices (from Stripe), newest first",
        parameters=[InvoicesQuery],
        responses={
            200: inline_serializer(
                "InvoiceList",
                {"invoices": serializers.ListField(child=_invoice), "has_more": serializers.BooleanField()},
            ),
            400: problem(
                VALIDATION_ERROR,
                "`limit` out of 1-100, or `starting_after` not one of your invoices.",
            ),
            503: _UNAVAILABLE,
        },
    )
    def get(self, request):
        query = InvoicesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            rows, more = subscriptions.invoices_list(
                organization=self.organization,
                limit=query.validated_data["limit"],
                starting_after=query.validated_data.get("starting_after"),
            )
        except ValueError as exc:
            raise serializers.ValidationError({"starting_after": [str(exc)]}) from exc
        return Response({"invoices": rows, "has_more": more})


# --- the webhook ---------------------------------------------------------------------------------------
@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store once, answer at once; a task applies the event (``billing.webhooks``)."""
    try:
        event, new = webhooks.event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except stripe_api.BillingNotConfigured:
        return problem_http_response(request, bp.BILLING_NOT_CONFIGURED, "STRIPE_WEBHOOK_SECRET is not set.")
    except webhooks.BadWebhook as exc:
        logger.warning("stripe webhook refused: %s", exc)
        return problem_http_response(request, bp.WEBHOOK_INVALID, str(exc))
    return JsonResponse({"received": True, "id": event.event_id, "duplicate": not new})
