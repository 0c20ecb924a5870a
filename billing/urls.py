"""Routes of the billing app (mounted by apiplatform/urls.py)."""

urlpatterns: list = []
