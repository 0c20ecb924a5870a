"""Latency of the multi-coin candle page (``GET /v1/candles``) against its same-run baseline: the same
rows read as one single-coin page per coin (what a client without the endpoint does, minus HTTP).

Both render the page in PostgreSQL (``selectors.candles_multi_page_json`` vs ``candles_page_json`` per
coin). Cases, 50 coins drawn at random from 200 with 3,000 1m candles each:
  * ``range``: the coins' newest 100 1m candles (``start`` = 99 minutes before the newest): 5,000 rows;
  * ``full``:  no range, limit 5,000: the first coins fill the page and the query must stop there (the
    baseline reads the same 5,000 rows: coin after coin until it has them).

    .venv/bin/python bench/bench_multi_candles.py [--reads 200]
Database: ``BENCH_MULTI_DATABASE_URL`` (default postgres://postgres@127.0.0.1:5432/candlestack_bench_multi),
created, migrated and filled through ``marketdata.services.candles_upsert`` on the first run.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import timedelta

import benchdb
import numpy as np

BENCH_MULTI_DB = os.environ.get(
    "BENCH_MULTI_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/candlestack_bench_multi"
)
benchdb.BENCH_DB = BENCH_MULTI_DB
benchdb.use_bench_database(create=True)
os.environ["DATABASE_URL"] = BENCH_MULTI_DB
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
os.environ.setdefault("ALLOWED_HOSTS", "localhost")


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.array(values), p))


COINS, CANDLES = 200, 3000


def fill(services, connection) -> None:
    """200 coins x 3,000 1m candles through the write path, once."""
    from datetime import UTC, datetime

    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM marketdata_coin WHERE upstream_id LIKE 'bench-multi-%%'")
        if cur.fetchone()[0] >= COINS:
            return
    ids = services.coins_upsert(
        coins=[services.CoinIn(f"bench-multi-{i:03}", f"bm{i}", f"Bench {i}") for i in range(COINS)]
    )
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    rng = np.random.default_rng(2)
    for coin in ids.values():
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, CANDLES)))
        services.candles_upsert(
            rows=[
                services.CandleRow(
                    coin, "1m", end - timedelta(minutes=CANDLES - i), c, c * 1.001, c * 0.999, c, None, 1e9
                )
                for i, c in enumerate(close.tolist())
            ],
            source="bench",
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from marketdata import selectors, services

    call_command("migrate", verbosity=0)
    fill(services, connection)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.id, c.upstream_id, max(k.bucket_start) FROM marketdata_coin c "
            "JOIN marketdata_candle k ON k.coin_id = c.id AND k.timeframe = '1m' "
            "WHERE c.upstream_id LIKE 'bench-multi-%%' GROUP BY c.id, c.upstream_id"
        )
        rows = cur.fetchall()
    rng = np.random.default_rng(1)
    print(f"coins with 1m candles: {len(rows):,}; reads per case: {args.reads}")

    def sample() -> list[tuple[int, str, object]]:
        return [rows[i] for i in rng.choice(len(rows), size=50, replace=False).tolist()]

    def run(label: str, multi, single) -> None:
        lat_m, lat_s, n_m, n_s = [], [], 0, 0
        for _ in range(args.reads):
            coins = sample()
            t = time.perf_counter()
            text = multi(coins)
            lat_m.append((time.perf_counter() - t) * 1000)
            n_m = text.count('{"coin":')
            t = time.perf_counter()
            n_s = single(coins)
            lat_s.append((time.perf_counter() - t) * 1000)
        p50m, p99m, p50s, p99s = pct(lat_m, 50), pct(lat_m, 99), pct(lat_s, 50), pct(lat_s, 99)
        print(
            f"{label:6} rows {n_m:5} (baseline {n_s:5})  multi p50 {p50m:7.2f} ms p99 {p99m:7.2f} ms  "
            f"| baseline p50 {p50s:7.2f} ms p99 {p99s:7.2f} ms  | baseline/multi p50 {p50s / p50m:5.1f}x"
        )

    def multi_range(coins):
        newest = max(t for _, _, t in coins)
        return selectors.candles_multi_page_json(
            coins=[(c, u) for c, u, _ in coins], timeframe="1m", start=newest - timedelta(minutes=99),
            end=None, after=None, order="desc", limit=5000,
        )[3]  # fmt: skip

    def single_range(coins):
        newest = max(t for _, _, t in coins)
        n = 0
        for c, _, _ in coins:
            text = selectors.candles_page_json(
                coin_id=c, timeframe="1m", start=newest - timedelta(minutes=99), end=None,
                cursor_us=None, order="desc", limit=5000,
            )[3]  # fmt: skip
            n += text.count('"time"')
        return n

    def multi_full(coins):
        return selectors.candles_multi_page_json(
            coins=[(c, u) for c, u, _ in coins], timeframe="1m", start=None, end=None, after=None,
            order="desc", limit=5000,
        )[3]  # fmt: skip

    def single_full(coins):
        n = 0
        for c, _, _ in coins:
            text = selectors.candles_page_json(
                coin_id=c, timeframe="1m", start=None, end=None, cursor_us=None, order="desc", limit=5000 - n
            )[3]
            n += text.count('"time"')
            if n >= 5000:
                break
        return n

    run("range", multi_range, single_range)
    run("full", multi_full, single_full)


if __name__ == "__main__":
    main()
