"""Partitions of ``marketdata_candle``: created ahead, pruned by retention.

Layout (created by migrations 0001 and 0004)::

    marketdata_candle                 PARTITION BY LIST (timeframe)
      marketdata_candle_1m            PARTITION BY RANGE (bucket_start)
        marketdata_candle_1m_default  DEFAULT: rows for which no range partition exists
        marketdata_candle_1m_p20261124  one per day     (1m)
      marketdata_candle_5m_p202611    one per month   (5m, 15m, 1h, 4h)
      marketdata_candle_1d_p2026      one per year    (1d, 1w: a week belongs to the year of its Monday)

The partition name encodes its range, so no catalog text has to be parsed. A partition is created as
a plain table, rows of its range are moved out of the DEFAULT partition, then it is ATTACHed (which
takes only SHARE UPDATE EXCLUSIVE on the parent, so reads and writes of other partitions go on).
Creation is serialised across processes by a transaction-level advisory lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from marketdata.models import TIMEFRAMES, timeframe_numbers

logger = logging.getLogger(__name__)

PARENT = "marketdata_candle"
#: How long one partition of each timeframe spans.
PARTITION_SPAN: dict[str, str] = {
    "1m": "day",
    "5m": "month",
    "15m": "month",
    "1h": "month",
    "4h": "month",
    "1d": "year",
    "1w": "year",
}
#: The most partitions one write may create (a wild timestamp must not create thousands of tables;
#: rows outside the created range land in the DEFAULT partition and are still stored and readable).
MAX_CREATE_PER_CALL = 400
_LOCK_KEY = 0x43414E44  # "CAND": advisory lock serialising partition DDL across processes


@dataclass(frozen=True)
class Partition:
    timeframe: str
    name: str
    start: datetime
    end: datetime


def table_for(timeframe: str) -> str:
    return f"{PARENT}_{timeframe}"


def _floor(timeframe: str, t: datetime) -> datetime:
    t = t.astimezone(UTC)
    span = PARTITION_SPAN[timeframe]
    if span == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if span == "month":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _next(timeframe: str, start: datetime) -> datetime:
    span = PARTITION_SPAN[timeframe]
    if span == "day":
        return start + timedelta(days=1)
    if span == "month":
        return (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return start.replace(year=start.year + 1)


def partition_for(timeframe: str, t: datetime) -> Partition:
    """The range partition that holds bucket ``t`` of ``timeframe``."""
    start = _floor(timeframe, t)
    fmt = {"day": "%Y%m%d", "month": "%Y%m", "year": "%Y"}[PARTITION_SPAN[timeframe]]
    name = f"{table_for(timeframe)}_p{start.strftime(fmt)}"
    return Partition(timeframe, name, start, _next(timeframe, start))


def retention() -> dict[str, timedelta | None]:
    """Parsed ``CANDLE_RETENTION_DAYS`` (``"1m=30,5m=365,…"``); None = keep forever."""
    result: dict[str, timedelta | None] = dict.fromkeys(TIMEFRAMES)
    for tf, days in timeframe_numbers("CANDLE_RETENTION_DAYS", settings.CANDLE_RETENTION_DAYS).items():
        result[tf] = timedelta(days=days) if days > 0 else None
    return result


def existing(timeframe: str) -> set[str]:
    """Names of the range partitions (not the default) of one timeframe."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table_for(timeframe)],
        )
        return {name for (name,) in cur.fetchall() if not name.endswith("_default")}


def partitions_list(timeframe: str) -> list[Partition]:
    """The range partitions of one timeframe, oldest first."""
    parts = []
    for name in existing(timeframe):
        stamp = name.rsplit("_p", 1)[1]
        fmt = {8: "%Y%m%d", 6: "%Y%m", 4: "%Y"}[len(stamp)]
        start = datetime.strptime(stamp, fmt).replace(tzinfo=UTC)
        parts.append(Partition(timeframe, name, start, _next(timeframe, start)))
    return sorted(parts, key=lambda p: p.start)


def _create(part: Partition) -> int:
    """Create one partition, moving its rows out of the DEFAULT partition. Returns rows moved."""
    parent = table_for(part.timeframe)
    default = f"{parent}_default"
    with connection.cursor() as cur:
        cur.execute(f'CREATE TABLE "{part.name}" (LIKE "{parent}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)')
        cur.execute(
            f'WITH moved AS (DELETE FROM "{default}" WHERE bucket_start >= %s AND bucket_start < %s '  # noqa: S608
            f'RETURNING *) INSERT INTO "{part.name}" SELECT * FROM moved',
            [part.start, part.end],
        )
        moved = cur.rowcount
        cur.execute(
            f'ALTER TABLE "{parent}" ATTACH PARTITION "{part.name}" FOR VALUES FROM (%s) TO (%s)',
            [part.start, part.end],
        )
    if moved:
        logger.info("partition %s created, %d rows moved out of the default partition", part.name, moved)
    else:
        logger.info("partition %s created", part.name)
    return moved


def partitions_ensure(
    *, timeframe: str, start: datetime, end: datetime, now: datetime | None = None
) -> list[str]:
    """Make sure range partitions exist for buckets in [start, end] of ``timeframe``.

    Partitions wholly older than the timeframe's retention are not created (such rows land in the
    DEFAULT partition and are pruned by :func:`partitions_prune`). At most ``MAX_CREATE_PER_CALL``
    partitions are created (the newest ones). Returns the names created.
    """
    now = now or timezone.now()
    keep = retention()[timeframe]
    if keep is not None:
        start = max(start, now - keep)
    if start > end:
        return []
    wanted: list[Partition] = []
    part = partition_for(timeframe, start)
    last = partition_for(timeframe, end)
    while part.start <= last.start:
        wanted.append(part)
        part = partition_for(timeframe, part.end)
    wanted = wanted[-MAX_CREATE_PER_CALL:]
    have = existing(timeframe)
    missing = [p for p in wanted if p.name not in have]
    if not missing:
        return []
    created = []
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        have = existing(timeframe)  # another process may have created them while we waited
        for p in missing:
            if p.name not in have:
                _create(p)
                created.append(p.name)
    return created


def partitions_maintain(*, now: datetime | None = None, ahead: int | None = None) -> dict:
    """Periodic job: keep ``ahead`` future partitions of every timeframe ready, then prune by retention."""
    now = now or timezone.now()
    ahead = settings.CANDLE_PARTITIONS_AHEAD if ahead is None else ahead
    created: list[str] = []
    for tf in TIMEFRAMES:
        current = partition_for(tf, now)
        end = current.start
        for _ in range(ahead):
            end = _next(tf, end)
        created += partitions_ensure(timeframe=tf, start=current.start, end=end, now=now)
    pruned = partitions_prune(now=now)
    return {"created": created, **pruned}


def partitions_missing_ahead(
    *, now: datetime | None = None, ahead: int | None = None
) -> dict[str, list[str]]:
    """Per timeframe, the names of the range partitions that :func:`partitions_maintain` keeps ready
    (the current one and ``ahead`` more; ``CANDLE_PARTITIONS_AHEAD`` by default) and that do not
    exist (1 query per timeframe). Timeframes missing none are left out."""
    now = now or timezone.now()
    ahead = settings.CANDLE_PARTITIONS_AHEAD if ahead is None else ahead
    missing: dict[str, list[str]] = {}
    for tf in TIMEFRAMES:
        have = existing(tf)
        part = partition_for(tf, now)
        names = []
        for _ in range(ahead + 1):
            if part.name not in have:
                names.append(part.name)
            part = partition_for(tf, part.end)
        if names:
            missing[tf] = names
    return missing


def partitions_prune(*, now: datetime | None = None) -> dict:
    """Drop range partitions that ended before their timeframe's retention cut-off, delete expired
    rows from the DEFAULT partitions, and delete ticks older than ``TICK_RETENTION_HOURS``.

    Retention is enforced per whole partition: rows of the partition that straddles the cut-off stay
    until all of it has expired (at most one partition span longer than the setting).
    """
    now = now or timezone.now()
    dropped: list[str] = []
    default_rows = 0
    for tf, keep in retention().items():
        if keep is None:
            continue
        cutoff = now - keep
        with transaction.atomic(), connection.cursor() as cur:
            for part in partitions_list(tf):
                if part.end <= cutoff:
                    cur.execute(f'DROP TABLE "{part.name}"')
                    dropped.append(part.name)
            cur.execute(
                f'DELETE FROM "{table_for(tf)}_default" WHERE bucket_start < %s',  # noqa: S608
                [cutoff],
            )
            default_rows += cur.rowcount
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM marketdata_tick WHERE time < %s",
            [now - timedelta(hours=settings.TICK_RETENTION_HOURS)],
        )
        ticks = cur.rowcount
    if dropped or default_rows or ticks:
        logger.info("pruned partitions %s, %d default rows, %d ticks", dropped, default_rows, ticks)
    return {"dropped": dropped, "default_rows_deleted": default_rows, "ticks_deleted": ticks}
