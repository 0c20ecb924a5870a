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
    Schedule(
        "marketdata: candle partitions (hourly)",
        "marketdata.maintain_partitions",
        crontab={"minute": "7"},
        description="Creates candle partitions ahead, drops the ones past retention.",
    ),
)
