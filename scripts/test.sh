#!/usr/bin/env bash
# Runs the whole test suite: lint (ruff), import rules (lint-imports, scripts/check_imports.py),
# types (mypy), migration check, then pytest against the real PostgreSQL and Redis. Extra arguments
# go to pytest (e.g. scripts/test.sh tests/accounts -x).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# Tests get their own Redis databases so a running platform (db 0/1) is never flushed by them.
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export CELERY_BROKER_URL="${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/14}"
setup_all
ensure_nginx
ensure_chromium
ensure_axe_core
ensure_promtool
export DEBUG="${DEBUG:-1}"
cd "$REPO_ROOT"

log "ruff check"
"$VENV/bin/ruff" check .
log "ruff format --check"
"$VENV/bin/ruff" format --check .
log "import rules (lint-imports: the contracts in pyproject.toml)"
"$VENV/bin/lint-imports"
log "import rules (scripts/check_imports.py: cycles, private names, settings defaults, marketdata SQL)"
"$PY" scripts/check_imports.py
log "types (mypy)"
"$VENV/bin/mypy"
ensure_database
mkdir -p "$REPO_ROOT/staticfiles"
log "migrations are complete"
"$PY" manage.py makemigrations --check --dry-run >/dev/null \
  || { "$PY" manage.py makemigrations --check --dry-run; die "a model change has no migration"; }
log "pytest"
exec "$VENV/bin/pytest" "$@"
