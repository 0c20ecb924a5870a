"""Routes of the accounts app (mounted by apiplatform/urls.py)."""

urlpatterns: list = []
