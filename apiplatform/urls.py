"""Root URLs. Each app owns its routes in ``<app>/urls.py``; everything public lives under /v1/."""

from django.contrib import admin
from django.urls import include, path

from accounts.admin_login import limited_admin_login
from apiplatform import apidocs, health, metrics, views
from billing.stripe_views import stripe_webhook

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),  # Prometheus; METRICS_TOKEN / METRICS_ALLOWED_IPS
    path("problems/", views.problem_types, name="problem-types"),
    path("problems/<slug:slug>", views.problem_type, name="problem-type"),
    path("admin/login/", limited_admin_login),  # the admin's login, rate limited like POST token
    path("admin/operations/", include("apiplatform.ops.urls")),  # the operations console (staff)
    path("admin/", admin.site.urls),
    path("billing/stripe/webhook", stripe_webhook, name="stripe-webhook"),
    path("v1/schema/", apidocs.SchemaView.as_view(), name="schema"),
    path("v1/docs/", apidocs.SwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("v1/redoc/", apidocs.RedocView.as_view(url_name="schema"), name="redoc"),
    path("v1/account/", include("accounts.urls")),
    path("v1/account/", include("marketdata.alerts.urls")),  # alerts and webhooks (docs/alerts.md)
    path("v1/keys/", include("accounts.public_urls")),  # POST /v1/keys/revoke-leaked (no credentials)
    path("v1/", include("billing.urls")),
    path("v1/", include("marketdata.urls")),
    path("", include("accounts.portal.urls")),  # the developer portal's pages (docs/portal.md)
]

handler400 = "apiplatform.exceptions.bad_request"
handler403 = "apiplatform.exceptions.permission_denied"
handler404 = "apiplatform.exceptions.page_not_found"
handler500 = "apiplatform.exceptions.server_error"
