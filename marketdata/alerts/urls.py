"""Routes of the alerts API, mounted at /v1/account/ by apiplatform/urls.py (docs/alerts.md)."""

from django.urls import path

from marketdata.alerts import views

app_name = "alerts"

urlpatterns = [
    path("alerts", views.AlertListView.as_view(), name="alerts"),
    path("alerts/<int:alert_id>", views.AlertDetailView.as_view(), name="alert"),
    path("webhook-endpoints", views.EndpointListView.as_view(), name="endpoints"),
    path("webhook-endpoints/<int:endpoint_id>", views.EndpointDetailView.as_view(), name="endpoint"),
    path(
        "webhook-endpoints/<int:endpoint_id>/rotate-secret",
        views.EndpointRotateSecretView.as_view(),
        name="endpoint-rotate-secret",
    ),
    path("webhook-endpoints/<int:endpoint_id>/test", views.EndpointTestView.as_view(), name="endpoint-test"),
    path("deliveries", views.DeliveryListView.as_view(), name="deliveries"),
    path("deliveries/<int:delivery_id>", views.DeliveryDetailView.as_view(), name="delivery"),
    path("deliveries/<int:delivery_id>/replay", views.DeliveryReplayView.as_view(), name="delivery-replay"),
]
