#!/usr/bin/env bash
# Runs the whole platform in the foreground: web (gunicorn), the SSE stream server (uvicorn), Celery
# worker, Celery beat and — unless
# COINGECKO_API_KEYS is set — the CoinGecko simulator with ingestion pointed at it. Creates a demo
# tenant and API key and prints a working curl. Ctrl-C stops everything cleanly.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
setup_all
export DEBUG="${DEBUG:-1}"
WEB_HOST="${WEB_HOST:-127.0.0.1}"
WEB_PORT="${WEB_PORT:-8000}"
WEB_WORKERS="${WEB_WORKERS:-4}"
WEB_THREADS="${WEB_THREADS:-1}"  # > 1: gthread workers (keep-alive); 1: sync workers (best tail latency here)
STREAM_PORT="${STREAM_PORT:-8001}"  # the SSE stream (GET /v1/stream): uvicorn, apiplatform.asgi
SIM_PORT="${SIM_PORT:-8765}"
SIM_COINS="${SIM_COINS:-2000}"
cd "$REPO_ROOT"
mkdir -p .run

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

if [[ -z "${COINGECKO_API_KEYS:-}" ]]; then
  # No real CoinGecko key: run the simulator and point ingestion at it.
  export COINGECKO_API_KEYS="candlestack-sim-key" COINGECKO_PLAN=pro
  export COINGECKO_BASE_URL="http://127.0.0.1:$SIM_PORT/api/v3"
  log "Starting the CoinGecko simulator on http://127.0.0.1:$SIM_PORT ($SIM_COINS coins)"
  start "$PY" -m ingestion.simulator --host 127.0.0.1 --port "$SIM_PORT" --coins "$SIM_COINS" \
    --seed "${SIM_SEED:-42}" --keys "$COINGECKO_API_KEYS" --head-tick-period "${SIM_HEAD_TICK_PERIOD:-1,3}"
  for _ in $(seq 1 60); do
    curl -fsS -H "x-cg-pro-api-key: $COINGECKO_API_KEYS" "$COINGECKO_BASE_URL/ping" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS -H "x-cg-pro-api-key: $COINGECKO_API_KEYS" "$COINGECKO_BASE_URL/ping" >/dev/null \
    || die "the simulator did not start on port $SIM_PORT (set SIM_PORT to a free port)"
else
  log "Using the real CoinGecko API (${COINGECKO_PLAN:-pro} plan)"
fi

ensure_database
log "Applying migrations"
"$PY" manage.py migrate --noinput
"$PY" manage.py setup_schedules
"$PY" manage.py collectstatic --noinput >/dev/null

log "Starting web on http://$WEB_HOST:$WEB_PORT, the stream on http://$WEB_HOST:$STREAM_PORT, Celery worker and beat"
start "$VENV/bin/gunicorn" apiplatform.wsgi:application --bind "$WEB_HOST:$WEB_PORT" \
  --workers "$WEB_WORKERS" --threads "$WEB_THREADS" --access-logfile - --graceful-timeout 5
# The stream server: Django's ASGI app under uvicorn (one process: one Redis subscription, docs/stream.md).
export STREAM_PUBLIC_URL="${STREAM_PUBLIC_URL:-http://$WEB_HOST:$STREAM_PORT}"
# Opening storms (every client reconnecting at once) run the gateway in many threads at once: a
# longer Redis timeout than the web's keeps a busy machine from tripping the gateway's fallback.
start env GATEWAY_REDIS_TIMEOUT="${STREAM_GATEWAY_REDIS_TIMEOUT:-2}" \
  "$VENV/bin/uvicorn" apiplatform.asgi:application --host "$WEB_HOST" --port "$STREAM_PORT" \
  --lifespan off --no-access-log --timeout-graceful-shutdown 5
start "$VENV/bin/celery" -A apiplatform worker --loglevel INFO --concurrency "${CELERY_CONCURRENCY:-2}" \
  -Q default,ingestion -n "live@%h"
# History and re-fetches on a worker of their own: a long history run never holds a slot the
# per-minute refresh needs (as the deploy/ topology does with one worker per queue).
start "$VENV/bin/celery" -A apiplatform worker --loglevel INFO --concurrency 1 -Q backfill -n "backfill@%h"
start "$VENV/bin/celery" -A apiplatform beat --loglevel INFO

for _ in $(seq 1 60); do
  curl -fsS "http://$WEB_HOST:$WEB_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done

# First market data now (beat repeats it every minute), so the demo call below has data.
log "Fetching the first market data (one refresh cycle)"
"$PY" manage.py refresh_markets --reference || log "the first refresh failed; beat retries every minute"
# History right away for the top coins (the scheduled ingestion.fill_history then does the rest of the
# universe): newest first, so within a minute the top 100 have 180 days of daily and 31 days of
# hourly candles (indicators, the 1h/1d screener and past rankings have values), then all of it.
if [[ "${DEMO_HISTORY_TOP:-100}" != "0" ]]; then
  log "Filling the top ${DEMO_HISTORY_TOP:-100} coins' history in the background (worker 'backfill'; progress: admin → History progress)"
  "$PY" manage.py fill_history --top "${DEMO_HISTORY_TOP:-100}" --seconds 1800 --enqueue \
    || log "could not enqueue the history fill; the scheduled job fills history every minute"
fi

# Demo tenant and key: reuse the saved key while it works, else issue a new one (shown once).
BASE="http://$WEB_HOST:$WEB_PORT"
KEY="$(cat .run/demo_key 2>/dev/null || true)"
if [[ -z "$KEY" ]] || [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$BASE/v1/limits")" != "200" ]]; then
  KEY="$("$PY" manage.py create_api_key --org demo --create-org --plan developer --name "demo key" | tail -n1)"
  (umask 077; echo "$KEY" > .run/demo_key)
fi

cat <<MSG

  Candlestack is up.
    try it:      curl -H "Authorization: Bearer $KEY" "$BASE/v1/prices?ids=bitcoin,ethereum"
                 curl -H "Authorization: Bearer $KEY" "$BASE/v1/coins/bitcoin/candles?timeframe=1m&limit=5"
    stream:      curl -N -H "Authorization: Bearer $KEY" "$STREAM_PUBLIC_URL/v1/stream?ids=bitcoin,ethereum&channels=prices,candles:1m"
    readiness:   curl $BASE/readyz
    API docs:    $BASE/v1/docs/   (Redoc: /v1/redoc/, schema: /v1/schema/)
    admin:       $BASE/admin/     (create a user: .venv/bin/python manage.py createsuperuser)
    the demo key is saved in .run/demo_key (organization "demo", plan "developer")
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}" || true
log "A process exited; shutting down the rest"
