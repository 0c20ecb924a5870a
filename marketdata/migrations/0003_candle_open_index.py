from django.db import migrations


class Migration(migrations.Migration):
    """A partial index of the (few) open candles, so that closing every bucket whose end has passed
    (services.candles_close) is an index scan, whatever happened to the cycles that wrote them."""

    dependencies = [("marketdata", "0002_latestindicator")]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX marketdata_candle_open ON marketdata_candle (timeframe, bucket_start) WHERE NOT closed",
            reverse_sql="DROP INDEX marketdata_candle_open",
        ),
    ]
