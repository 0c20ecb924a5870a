#!/usr/bin/env bash
# Production start-up of the web process: collects the static files (or stops, saying why), then
# replaces itself with gunicorn (deploy/gunicorn.conf.py) on loopback, meant to sit behind the
# buffering nginx of deploy/nginx/ (docs/operations.md, "Production web"). Unlike scripts/run.sh
# (the development stack) it starts nothing else and installs nothing: the release step runs
# `manage.py migrate`, and the Celery worker and beat are their own services.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO_ROOT/.venv}"
PY="$VENV/bin/python"
cd "$REPO_ROOT"
export DEBUG="${DEBUG:-0}" DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-apiplatform.settings}"

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

[[ -x "$PY" ]] || die "no virtual environment at $VENV (create it with scripts/run.sh once, or set VENV)"
# Production settings refuse to load without SECRET_KEY and ALLOWED_HOSTS; say so before anything.
"$PY" -c 'import django; django.setup()' 2>/dev/null \
  || { "$PY" -c 'import django; django.setup()' 2>&1 | tail -n 1 >&2; die "the settings do not load (see the line above)"; }
# Without collected static files the admin and /v1/docs/ answer 500 in production: collect them now.
"$PY" manage.py collectstatic --noinput >/dev/null \
  || die "collectstatic failed (STATIC_ROOT must be writable); the web process was not started"
exec "$VENV/bin/gunicorn" --config "$REPO_ROOT/deploy/gunicorn.conf.py" apiplatform.wsgi:application "$@"
