"""Routes of the billing app (mounted at /v1/ by apiplatform/urls.py)."""

from django.conf import settings
from django.urls import path

from billing import views

urlpatterns = [
    path("ping", views.PingView.as_view(), name="ping"),
    path("limits", views.LimitsView.as_view(), name="limits"),
    path("account/usage", views.UsageView.as_view(), name="account-usage"),
]

if settings.GATEWAY_BENCH_ROUTES:  # bench/bench_gateway.py: the same endpoint without the gateway
    urlpatterns += [
        path("bench/ping-authonly", views.PingAuthOnlyView.as_view(), name="bench-ping-authonly"),
        path("bench/ping-nogateway", views.PingNoGatewayView.as_view(), name="bench-ping-nogateway"),
    ]
