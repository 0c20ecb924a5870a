"""Accounts routes outside the management API, mounted at /v1/keys/ by apiplatform/urls.py: the
public, unauthenticated report of a published key (secret scanners)."""

from django.urls import path

from accounts import views

app_name = "accounts-public"

urlpatterns = [
    path("revoke-leaked", views.RevokeLeakedKeyView.as_view(), name="revoke-leaked"),
]
