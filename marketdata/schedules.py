"""The periodic jobs of marketdata, collected by `apiplatform.jobs.schedules` for setup_schedules."""

from __future__ import annotations

from apiplatform.jobs.schedules import Schedule

SCHEDULES: tuple[Schedule, ...] = (
    Schedule(
        "marketdata: screener 1m/5m (every minute)",
        "marketdata.refresh_screener",
        every_seconds=60,
        kwargs={"timeframes": ["1m", "5m"]},
        expire_seconds=55,
        description="Latest indicators of every coin for /v1/screener, after the minute's roll-ups.",
    ),
    Schedule(
        "marketdata: screener 15m/1h/1d (every 5 minutes)",
        "marketdata.refresh_screener",
        every_seconds=300,
        kwargs={"timeframes": ["15m", "1h", "1d"]},
        expire_seconds=290,
        description="Latest indicators of the slower timeframes for /v1/screener.",
    ),
    # A schedule of its own (not added to the one above): setup_schedules creates missing schedules
    # but keeps existing ones as an operator may have edited them, so a deployment gets this one
    # without a --reset.
    Schedule(
        "marketdata: screener 4h/1w (every 5 minutes)",
        "marketdata.refresh_screener",
        every_seconds=300,
        kwargs={"timeframes": ["4h", "1w"]},
        expire_seconds=290,
        description="Latest indicators of the 4h and 1w timeframes for /v1/screener.",
    ),
    Schedule(
        "marketdata: candle partitions (hourly)",
        "marketdata.maintain_partitions",
        crontab={"minute": "7"},
        description="Creates candle partitions ahead, drops the ones past retention.",
    ),
)
