"""The "timeframe=number,…" settings (candle retention, quality look-backs) parse in one place."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ingestion import quality
from marketdata import partitions
from marketdata.models import timeframe_numbers


def test_timeframe_numbers_keeps_order_and_skips_blanks():
    assert timeframe_numbers("X", " 1h=5, ,1m=30,") == {"1h": 5, "1m": 30}


@pytest.mark.parametrize(
    ("value", "message"), [("1x=3", "unknown timeframe '1x'"), ("1m=lots", "'1m=lots' is not timeframe")]
)
def test_timeframe_numbers_names_the_setting_on_bad_input(value, message):
    with pytest.raises(ValueError, match=message) as info:
        timeframe_numbers("SOME_SETTING", value)
    assert str(info.value).startswith("SOME_SETTING: ")


def test_retention_and_lookbacks_read_their_settings(settings):
    settings.CANDLE_RETENTION_DAYS = "1m=2,1d=0"
    assert partitions.retention() == {
        "1m": timedelta(days=2),
        "5m": None,
        "15m": None,
        "1h": None,
        "4h": None,
        "1d": None,
        "1w": None,
    }
    settings.INGESTION_QUALITY_JUMP_LOOKBACK = "1h=60"
    assert quality._minutes("INGESTION_QUALITY_JUMP_LOOKBACK", settings.INGESTION_QUALITY_JUMP_LOOKBACK) == {
        "1h": timedelta(minutes=60)
    }
    settings.CANDLE_RETENTION_DAYS = "2w=3"
    with pytest.raises(ValueError, match="CANDLE_RETENTION_DAYS: unknown timeframe '2w'"):
        partitions.retention()
