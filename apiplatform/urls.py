"""Root URLs. Each app owns its routes in ``<app>/urls.py``; everything public lives under /v1/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apiplatform import health, views

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("problems/", views.problem_types, name="problem-types"),
    path("problems/<slug:slug>", views.problem_type, name="problem-type"),
    path("admin/", admin.site.urls),
    path("v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("v1/account/", include("accounts.urls")),
    path("v1/keys/", include("accounts.public_urls")),  # POST /v1/keys/revoke-leaked (no credentials)
    path("v1/", include("billing.urls")),
    path("v1/", include("marketdata.urls")),
]

handler400 = "apiplatform.exceptions.bad_request"
handler403 = "apiplatform.exceptions.permission_denied"
handler404 = "apiplatform.exceptions.page_not_found"
handler500 = "apiplatform.exceptions.server_error"
