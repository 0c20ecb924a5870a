import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
application = get_wsgi_application()

from apiplatform.startup import check_static_files  # noqa: E402 - needs the settings loaded

check_static_files()
