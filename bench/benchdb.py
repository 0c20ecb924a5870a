"""The benchmark database of the store benchmarks (filled once by bench_write_path.py, then reused
by bench_candle_reads, bench_pipeline_refresh, bench_indicators --db and bench_api).

``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432/candlestack_bench``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack_bench")


def use_bench_database(create: bool = False) -> None:
    """Point this process's Django settings at the benchmark database (call before django.setup());
    ``create``: create the database first if it does not exist."""
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = BENCH_DB
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if create:
        create_database()


def create_database() -> None:
    import psycopg

    name = BENCH_DB.rsplit("/", 1)[1]
    admin_url = BENCH_DB.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
