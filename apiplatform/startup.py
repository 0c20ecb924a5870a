"""Checks a web process makes before it serves anything (apiplatform.wsgi, apiplatform.asgi).

In production mode (``DEBUG=0``) static files are served by WhiteNoise from ``STATIC_ROOT`` through
the manifest ``collectstatic`` writes; without it every page that links a static file (the admin's
login, ``/v1/docs/``, ``/v1/redoc/``) answers 500. So the process refuses to start instead, naming
the fix. ``scripts/serve.sh`` (the production start-up path) collects them before it starts gunicorn.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MANIFEST = "staticfiles.json"  # whitenoise's CompressedManifestStaticFilesStorage (Django's default name)


def check_static_files() -> None:
    if settings.DEBUG:
        return  # development serves static files from the apps (WHITENOISE_USE_FINDERS)
    manifest = Path(settings.STATIC_ROOT) / MANIFEST
    if not manifest.is_file():
        raise ImproperlyConfigured(
            f"Static files are not collected: {manifest} is missing, so the admin and the API docs "
            "would answer 500. Run `python manage.py collectstatic --noinput` with the same settings "
            "before starting the web process (scripts/serve.sh does), or set STATIC_ROOT to where "
            "they were collected."
        )
