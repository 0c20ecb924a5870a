"""The Django project package: settings, root URLs, Celery app and the API gateway layer."""

from apiplatform.celery import app as celery_app

__all__ = ["celery_app"]
