"""Routes of the billing app (mounted at /v1/ by apiplatform/urls.py)."""

from django.conf import settings
from django.urls import path

from billing import stripe_views, views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="ping"),
    path("limits", views.LimitsView.as_view(), name="limits"),
    path("account/usage", views.UsageView.as_view(), name="account-usage"),
    path("account/usage/failures", views.UsageFailuresView.as_view(), name="account-usage-failures"),
    path("account/billing", stripe_views.BillingOverviewView.as_view(), name="account-billing"),
    path(
        "account/billing/checkout",
        stripe_views.BillingCheckoutView.as_view(),
        name="account-billing-checkout",
    ),
    path("account/billing/portal", stripe_views.BillingPortalView.as_view(), name="account-billing-portal"),
    path(
        "account/billing/invoices",
        stripe_views.BillingInvoicesView.as_view(),
        name="account-billing-invoices",
    ),
]

if settings.GATEWAY_BENCH_ROUTES:  # bench/bench_gateway.py: the same endpoint without the gateway
    urlpatterns += [
        path("bench/ping-authonly", views.PingAuthOnlyView.as_view(), name="bench-ping-authonly"),
        path("bench/ping-nogateway", views.PingNoGatewayView.as_view(), name="bench-ping-nogateway"),
    ]
