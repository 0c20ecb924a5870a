"""The periodic jobs of the pipeline, collected by `apiplatform.jobs.schedules` for setup_schedules."""

from __future__ import annotations

from django.conf import settings

from apiplatform.jobs.schedules import Schedule

SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "ingestion: fast prices of the top coins (every 20 s)",
        "ingestion.refresh_prices_fast",
        every_seconds=settings.INGESTION_FAST_EVERY_SECONDS,
        expire_seconds=max(1, settings.INGESTION_FAST_EVERY_SECONDS - 2),
        description="The top INGESTION_FAST_COINS coins by market cap through /simple/price (one call): "
        "ticks, snapshot prices, 1m candles, roll-ups.",
    ),
    Schedule(
        "ingestion: exchange rates (every 5 minutes)",
        "ingestion.refresh_exchange_rates",
        every_seconds=300,
        expire_seconds=290,
        description="/exchange_rates: the fiat rates of the vs= quote currencies.",
    ),
    Schedule(
        "ingestion: global market (every minute)",
        "ingestion.refresh_global",
        every_seconds=60,
        expire_seconds=55,
        description="/global: total market cap and volume, BTC/ETH dominance, active coins (history).",
    ),
    Schedule(
        "ingestion: refresh markets (every minute)",
        "ingestion.refresh_markets",
        every_seconds=60,
        expire_seconds=55,
        description="Snapshots, ticks and current 1m candles for the whole universe; roll-ups.",
    ),
    Schedule(
        "ingestion: roll-up catch-up (every 5 minutes)",
        "ingestion.rollup_candles",
        every_seconds=300,
        kwargs={"minutes": 30},
        expire_seconds=290,
        description="Recomputes 5m..1d from the last 30 minutes of 1m candles (unchanged rows untouched).",
    ),
    Schedule(
        "ingestion: data-quality check (every 5 minutes)",
        "ingestion.quality_check",
        every_seconds=300,
        expire_seconds=290,
        description="Missing buckets, implausible jumps, stale coins; schedules exact-range re-fetches.",
    ),
    Schedule(
        "ingestion: history fill (every minute)",
        "ingestion.fill_history",
        every_seconds=60,
        expire_seconds=55,
        description="Daily candles since each coin's first data and 90 days of hourly ones, newest first, "
        "in the upstream budget the live refresh leaves; resumable. A run works "
        "INGESTION_HISTORY_RUN_SECONDS; ticks while one works return at once.",
    ),
    Schedule(
        "ingestion: coin universe sync (daily)",
        "ingestion.sync_universe",
        crontab={"minute": "17", "hour": "3"},
        description="New coins added, delisted ones marked inactive.",
    ),
)
