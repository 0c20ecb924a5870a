"""Timeframes 4h and 1w, and two candle columns: ``samples`` (upstream observations behind a
candle) and ``partial`` (the bucket started before our first observation of the coin).

The candle table is created by SQL (0001), so its changes are SQL here too, with the matching state:

- a LIST partition per new timeframe, each RANGE-partitioned with its DEFAULT partition (range
  partitions are created on demand by ``marketdata.partitions``);
- the timeframe CHECK is widened ``NOT VALID``: every stored row satisfied the narrower one, and
  validating would scan the whole table under lock (the LIST partitioning, which has no DEFAULT
  partition at the timeframe level, refuses any other value anyway);
- ``samples integer NULL`` and ``partial boolean NOT NULL DEFAULT false``: adding a column with a
  constant default rewrites nothing (PostgreSQL 11+), so this is instant on a large table, and
  writers that do not name the columns (older code during a rolling deploy) keep working.
"""

from django.db import migrations, models

NEW = ("4h", "1w")
CHOICES = [
    ("1m", "1 minute"),
    ("5m", "5 minutes"),
    ("15m", "15 minutes"),
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("1d", "1 day"),
    ("1w", "1 week"),
]

FORWARD = [
    *[
        f"""
        CREATE TABLE marketdata_candle_{tf} PARTITION OF marketdata_candle
            FOR VALUES IN ('{tf}') PARTITION BY RANGE (bucket_start)
        """
        for tf in NEW
    ],
    *[f"CREATE TABLE marketdata_candle_{tf}_default PARTITION OF marketdata_candle_{tf} DEFAULT" for tf in NEW],
    "ALTER TABLE marketdata_candle DROP CONSTRAINT marketdata_candle_timeframe_valid",
    "ALTER TABLE marketdata_candle ADD CONSTRAINT marketdata_candle_timeframe_valid "
    "CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d', '1w')) NOT VALID",
    "ALTER TABLE marketdata_candle ADD COLUMN samples integer NULL, "
    "ADD COLUMN partial boolean NOT NULL DEFAULT false",
]
REVERSE = [
    "ALTER TABLE marketdata_candle DROP COLUMN samples, DROP COLUMN partial",
    *[f"DROP TABLE marketdata_candle_{tf} CASCADE" for tf in NEW],
    "ALTER TABLE marketdata_candle DROP CONSTRAINT marketdata_candle_timeframe_valid",
    "ALTER TABLE marketdata_candle ADD CONSTRAINT marketdata_candle_timeframe_valid "
    "CHECK (timeframe IN ('1m', '5m', '15m', '1h', '1d')) NOT VALID",
]


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0004_serieswatermark_since")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, reverse_sql=REVERSE)],
            state_operations=[
                migrations.AddField(
                    model_name="candle",
                    name="partial",
                    field=models.BooleanField(
                        db_default=False,
                        default=False,
                        help_text="The bucket started before our first observation.",
                    ),
                ),
                migrations.AddField(
                    model_name="candle",
                    name="samples",
                    field=models.IntegerField(
                        help_text="Upstream observations (ticks) behind the candle.", null=True
                    ),
                ),
                migrations.AlterField(
                    model_name="candle",
                    name="timeframe",
                    field=models.CharField(choices=CHOICES, max_length=3),
                ),
            ],
        ),
        # choices only: no SQL
        migrations.AlterField(
            model_name="latestindicator",
            name="timeframe",
            field=models.CharField(choices=CHOICES, max_length=3),
        ),
        migrations.AlterField(
            model_name="serieswatermark",
            name="timeframe",
            field=models.CharField(choices=CHOICES, max_length=3),
        ),
    ]
