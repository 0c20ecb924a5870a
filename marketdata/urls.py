"""Routes of the marketdata app (mounted by apiplatform/urls.py)."""

urlpatterns: list = []
