"""Routes of the ingestion app (mounted by apiplatform/urls.py)."""

urlpatterns: list = []
