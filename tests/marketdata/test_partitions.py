"""Partitions: created on write and ahead, DEFAULT partition as the safety net, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test import override_settings

from marketdata import partitions, selectors, services
from marketdata.services import CandleRow


def _partition_of(coin_id: int, timeframe: str, bucket_start: datetime) -> str:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tableoid::regclass::text FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = %s AND bucket_start = %s",
            [coin_id, timeframe, bucket_start],
        )
        return cur.fetchone()[0]


def test_writes_create_the_partition_they_need(coins, t0):
    when = t0 + timedelta(days=400)  # a 1d candle in a year without partition yet
    when = when.replace(hour=0)
    assert partitions.partition_for("1d", when).name not in partitions.existing("1d")
    services.candles_upsert(rows=[CandleRow(coins[0], "1d", when, 1, 1, 1, 1)], source="test")
    assert _partition_of(coins[0], "1d", when) == partitions.partition_for("1d", when).name


def test_rows_beyond_retention_land_in_the_default_partition_and_stay_readable(coins):
    old = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=90)
    result = services.candles_upsert(rows=[CandleRow(coins[0], "1m", old, 2, 2, 2, 2)], source="test")
    assert result.inserted == 1
    assert _partition_of(coins[0], "1m", old) == "marketdata_candle_1m_default"
    assert selectors.candles_range(coin_id=coins[0], timeframe="1m", fields=("bucket_start",)) == [(old,)]
    pruned = partitions.partitions_prune()
    assert pruned["default_rows_deleted"] == 1
    assert selectors.candles_range(coin_id=coins[0], timeframe="1m") == []


def test_creating_a_partition_moves_its_rows_out_of_the_default(coins):
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=20)
    with connection.cursor() as cur:  # a row that reached DEFAULT (e.g. written before the partition existed)
        cur.execute(
            "INSERT INTO marketdata_candle_1m_default (coin_id, timeframe, bucket_start, open, high, low, "
            "close, source, updated_at) VALUES (%s, '1m', %s, 1, 1, 1, 1, 'test', now())",
            [coins[0], day + timedelta(hours=3)],
        )
    created = partitions.partitions_ensure(timeframe="1m", start=day, end=day)
    assert created == [partitions.partition_for("1m", day).name]
    assert _partition_of(coins[0], "1m", day + timedelta(hours=3)) == created[0]
    # and the write path keeps working on it (ON CONFLICT finds the moved row)
    row = CandleRow(coins[0], "1m", day + timedelta(hours=3), 1, 1, 1, 1, closed=False)
    assert services.candles_upsert(rows=[row], source="test").unchanged == 1


def test_maintenance_keeps_future_partitions_ready(db):
    now = datetime.now(UTC)
    result = partitions.partitions_maintain(now=now, ahead=2)
    for tf in ("1m", "5m", "15m", "1h", "1d"):
        names = partitions.existing(tf)
        part = partitions.partition_for(tf, now)
        for _ in range(3):  # the current one and two ahead
            assert part.name in names
            part = partitions.partition_for(tf, part.end)
    assert partitions.partitions_maintain(now=now, ahead=2)["created"] == []  # idempotent
    assert result["created"]


@override_settings(CANDLE_RETENTION_DAYS="1m=10,5m=0,15m=0,1h=0,1d=0")
def test_retention_drops_whole_expired_partitions_only(coins):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    expired = partitions.partition_for("1m", now - timedelta(days=12))
    straddling = partitions.partition_for("1m", now - timedelta(days=10))
    for part in (expired, straddling):
        if part.name not in partitions.existing("1m"):
            partitions._create(part)  # bypass the retention clip of partitions_ensure
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO marketdata_candle (coin_id, timeframe, bucket_start, open, high, low, close, "
                "source, updated_at) VALUES (%s, '1m', %s, 1, 1, 1, 1, 'test', now())",
                [coins[0], part.start],
            )
    old_5m = now.replace(minute=0) - timedelta(days=3000)
    services.candles_upsert(rows=[CandleRow(coins[0], "5m", old_5m, 1, 1, 1, 1)], source="test")

    result = partitions.partitions_prune(now=now)
    assert expired.name in result["dropped"]
    assert straddling.name not in result["dropped"]
    names = partitions.existing("1m")
    assert expired.name not in names and straddling.name in names
    stored = {
        r[0] for r in selectors.candles_range(coin_id=coins[0], timeframe="1m", fields=("bucket_start",))
    }
    assert stored == {straddling.start}
    assert selectors.candles_range(coin_id=coins[0], timeframe="5m")  # 5m kept forever here


def test_old_ticks_are_pruned(coins):
    now = datetime.now(UTC)
    services.ticks_record(
        ticks=[
            services.TickIn(coins[0], now - timedelta(hours=100), 1.0),
            services.TickIn(coins[0], now - timedelta(hours=1), 1.0),
        ]
    )
    assert partitions.partitions_prune(now=now)["ticks_deleted"] == 1
