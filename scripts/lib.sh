#!/usr/bin/env bash
# Shared set-up for scripts/run.sh and scripts/test.sh: services, virtualenv, dependencies.
# Sourced, not executed. Every function is idempotent and safe to run on every start.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PY="$VENV/bin/python"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# Host/port of the local services, taken from the same variables the settings read.
_url_host() { python3 - "$1" "$2" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))
PY
}

ensure_postgres() {
  local url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/candlestack}"
  read -r host port < <(_url_host "$url" 5432)
  if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then return 0; fi
  if [[ "$host" != "127.0.0.1" && "$host" != "localhost" ]]; then
    die "PostgreSQL at $host:$port is not reachable (DATABASE_URL points at a remote host; start it there)."
  fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
    die "PostgreSQL 15 is not installed. Install it with: apt-get install -y postgresql-15 (then re-run)."
  fi
  log "PostgreSQL is stopped; starting it"
  if [[ -d /etc/postgresql ]] && command -v pg_ctlcluster >/dev/null 2>&1; then
    local ver; ver="$(ls /etc/postgresql | sort -V | tail -n1)"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || die "could not start PostgreSQL $ver/main"
  else
    die "PostgreSQL is installed but has no cluster; create one with: pg_createcluster 15 main --start"
  fi
  for _ in $(seq 1 30); do pg_isready -q -h "$host" -p "$port" && return 0; sleep 1; done
  die "PostgreSQL did not come up on $host:$port"
}

ensure_redis() {
  local url="${REDIS_URL:-redis://127.0.0.1:6379/1}"
  read -r host port < <(_url_host "$url" 6379)
  if _redis_ping "$host" "$port"; then return 0; fi
  if [[ "$host" != "127.0.0.1" && "$host" != "localhost" ]]; then
    die "Redis at $host:$port is not reachable (REDIS_URL points at a remote host; start it there)."
  fi
  command -v redis-server >/dev/null 2>&1 || die "Redis 7 is not installed. Install it with: apt-get install -y redis-server (then re-run)."
  log "Redis is stopped; starting it"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "could not start Redis"
  for _ in $(seq 1 30); do _redis_ping "$host" "$port" && return 0; sleep 0.5; done
  die "Redis did not come up on $host:$port"
}

_redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == "PONG" ]]
  else
    python3 -c "import socket,sys; s=socket.create_connection((sys.argv[1],int(sys.argv[2])),1); s.sendall(b'PING\r\n'); sys.exit(0 if s.recv(16).startswith(b'+PONG') else 1)" "$1" "$2" 2>/dev/null
  fi
}

ensure_venv() {
  local python="${PYTHON:-python3.11}"
  command -v "$python" >/dev/null 2>&1 || python=python3
  "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || die "Python 3.11 is required (found $("$python" --version 2>&1)). Install python3.11 and python3.11-venv."
  if [[ ! -x "$PY" ]]; then
    log "Creating virtual environment at .venv/"
    "$python" -m venv "$VENV" || die "could not create .venv (install python3.11-venv)"
  fi
  local stamp="$VENV/.lock.sha256" want
  want="$(sha256sum "$REPO_ROOT/requirements.lock" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "Installing dependencies from requirements.lock"
    # (grep drops this machine's notes about absent local package mirrors)
    local out rc=0
    out="$(mktemp)"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$REPO_ROOT/requirements.lock" >"$out" 2>&1 || rc=$?
    grep -v "is ignored: it is neither a file nor a directory" "$out" >&2 || true
    rm -f "$out"
    [[ $rc == 0 ]] || die "dependency installation failed (see pip's output above)"
    echo "$want" > "$stamp"
  fi
}

ensure_database() {
  # Create the application database named in DATABASE_URL if it does not exist yet.
  "$PY" - <<'PY' || die "could not create the database"
import os, dj_database_url, psycopg
cfg = dj_database_url.parse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack"))
conn = psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"] or "postgres",
                       password=cfg["PASSWORD"] or None, dbname="postgres", autocommit=True)
if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg["NAME"],)).fetchone():
    conn.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    print(f"created database {cfg['NAME']}")
PY
}

ensure_nginx() {
  # The buffering proxy of deploy/nginx/, started in front of gunicorn by tests/deploy.
  if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then return 0; fi
  [[ $EUID -eq 0 ]] || die "nginx is not installed. Install it with: apt-get install -y nginx-light (then re-run)."
  log "Installing nginx (nginx-light) for the deploy tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nginx-light >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq nginx-light >/dev/null; } \
    || die "could not install nginx-light (apt-get install -y nginx-light)"
}

ensure_chromium() {
  # Debian's Chromium for the portal's browser tests (tests/portal, Playwright); never a downloaded browser.
  [[ -x /usr/bin/chromium ]] && return 0
  [[ $EUID -eq 0 ]] || die "chromium is not installed. Install it with: apt-get install -y chromium (then re-run)."
  log "Installing chromium for the portal's browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; } \
    || die "could not install chromium (apt-get install -y chromium)"
}

ensure_axe_core() {
  # axe-core from the npm registry, injected into pages by tests/portal (into the git-ignored .run/node).
  local prefix="$REPO_ROOT/.run/node"
  [[ -f "$prefix/node_modules/axe-core/axe.min.js" ]] && return 0
  command -v npm >/dev/null 2>&1 || die "npm is needed for axe-core (apt-get install -y npm)"
  log "Installing axe-core (npm) for the portal's accessibility tests"
  mkdir -p "$prefix"
  npm install --no-save --silent --no-audit --no-fund --prefix "$prefix" axe-core@4 >/dev/null \
    || die "could not install axe-core from the npm registry"
}

ensure_promtool() {
  # promtool (Debian package prometheus) checks deploy/prometheus/ in tests/metrics/test_rules.py.
  if command -v promtool >/dev/null 2>&1; then return 0; fi
  [[ $EUID -eq 0 ]] || { log "promtool not installed (apt-get install -y prometheus): the alert rule tests are skipped"; return 0; }
  log "Installing promtool (prometheus) for the alert rule tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
    || log "could not install prometheus (promtool): the alert rule tests are skipped"
}

setup_all() {
  cd "$REPO_ROOT"
  ensure_postgres
  ensure_redis
  ensure_venv
}
