#!/usr/bin/env bash
# Runs the whole platform in the foreground: web (gunicorn), Celery worker and Celery beat.
# Ctrl-C stops everything cleanly. Set-up (services, .venv, dependencies, migrations) is done first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_all
export DEBUG="${DEBUG:-1}"
WEB_HOST="${WEB_HOST:-127.0.0.1}"
WEB_PORT="${WEB_PORT:-8000}"
WEB_WORKERS="${WEB_WORKERS:-2}"
cd "$REPO_ROOT"

ensure_database
log "Applying migrations"
"$PY" manage.py migrate --noinput
"$PY" manage.py setup_schedules
"$PY" manage.py collectstatic --noinput >/dev/null

pids=()
start() { "$@" & pids+=("$!"); }
stop() {
  trap - INT TERM EXIT
  log "Stopping (${#pids[@]} processes)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 20); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.5
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  log "Stopped"
}
trap stop INT TERM EXIT

log "Starting web on http://$WEB_HOST:$WEB_PORT, Celery worker and beat"
start "$VENV/bin/gunicorn" apiplatform.wsgi:application --bind "$WEB_HOST:$WEB_PORT" \
  --workers "$WEB_WORKERS" --threads 4 --worker-class gthread --access-logfile - --graceful-timeout 5
start "$VENV/bin/celery" -A apiplatform worker --loglevel INFO --concurrency "${CELERY_CONCURRENCY:-2}" \
  -Q default,ingestion,backfill
start "$VENV/bin/celery" -A apiplatform beat --loglevel INFO

for _ in $(seq 1 60); do
  curl -fsS "http://$WEB_HOST:$WEB_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
cat <<MSG

  Candlestack is up.
    readiness:   curl http://$WEB_HOST:$WEB_PORT/readyz
    API docs:    http://$WEB_HOST:$WEB_PORT/v1/docs/   (Redoc: /v1/redoc/, schema: /v1/schema/)
    admin:       http://$WEB_HOST:$WEB_PORT/admin/     (create a user: .venv/bin/python manage.py createsuperuser)
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}" || true
log "A process exited; shutting down the rest"
