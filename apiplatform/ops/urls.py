"""The admin's operations console, under /admin/operations/ (staff only: ``admin.site.admin_view``
sends anyone else to the admin's login)."""

from django.contrib import admin
from django.urls import path

from apiplatform.ops import views

app_name = "ops"

urlpatterns = [
    path("", admin.site.admin_view(views.overview), name="overview"),
    path("usage/", admin.site.admin_view(views.usage), name="usage"),
    path("coins/", admin.site.admin_view(views.coin_lookup), name="coin-lookup"),
    path("coins/<str:upstream_id>/", admin.site.admin_view(views.coin), name="coin"),
    path(
        "dead-letters/replay/", admin.site.admin_view(views.dead_letters_replay), name="dead-letters-replay"
    ),
]
