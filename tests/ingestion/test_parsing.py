"""Validation: bad records are rejected with a reason, good ones of the same payload go through."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from ingestion.coingecko import (
    CoinGeckoShapeError,
    ohlc_bucket_start,
    ohlc_candle_seconds,
    parse_coins_markets,
    parse_market_chart,
    parse_ohlc,
    parse_simple_price,
)

from .conftest import load_fixture

NOW = datetime(2023, 1, 8, 17, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("current_price", None, "current_price is null"),
        ("current_price", "NaN", "not finite"),
        ("current_price", -3.2, "must be positive"),
        ("current_price", 0, "must be positive"),
        ("current_price", "abc", "not a number"),
        ("current_price", True, "not a number"),
        ("last_updated", "not-a-date", "not an ISO 8601 time"),
        ("last_updated", "1970-01-01T00:00:00.000Z", "before 2009"),
        ("last_updated", "2031-01-01T00:00:00.000Z", "in the future"),
        ("market_cap", -5, "negative"),
        ("total_volume", "lots", "not a number"),
        ("id", None, "id missing"),
    ],
)
def test_bad_market_record_is_rejected_and_the_rest_land(field, value, reason):
    payload = copy.deepcopy(load_fixture("coins_markets.page1.per_page100.real-2023-01-08.json"))
    payload[7][field] = value
    result = parse_coins_markets(payload, now=NOW)
    assert len(result.records) == 99
    assert [r.index for r in result.rejects] == [7]
    assert reason in result.rejects[0].reason
    assert result.rejects[0].raw is payload[7]


def test_numeric_strings_from_old_answers_are_accepted_and_optional_junk_becomes_none():
    payload = copy.deepcopy(load_fixture("coins_markets.page1.per_page100.real-2023-01-08.json"))
    payload[0]["current_price"] = "16951.52"
    payload[0]["high_24h"] = "NaN"
    payload[0]["max_supply"] = None
    result = parse_coins_markets(payload, now=NOW)
    assert result.rejects == []
    first = result.records[0]
    assert (first.current_price, first.high_24h, first.max_supply) == (16951.52, None, None)
    assert first.last_updated == datetime(2023, 1, 8, 16, 49, 40, 132000, tzinfo=UTC)


def test_duplicate_market_ids_are_rejected():
    payload = load_fixture("coins_markets.page1.per_page100.real-2023-01-08.json")
    result = parse_coins_markets([*payload, payload[3]], now=NOW)
    assert len(result.records) == 100 and "duplicate id" in result.rejects[0].reason


@pytest.mark.parametrize("payload", [{"prices": []}, "oops", None, 42])
def test_markets_payload_of_the_wrong_shape_names_the_endpoint(payload):
    with pytest.raises(CoinGeckoShapeError, match="/coins/markets"):
        parse_coins_markets(payload, now=NOW)


def test_market_chart_points_validated_sorted_and_deduplicated():
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    prices = [
        [t0 + 600_000, 3.0],
        [t0, 1.0],
        [t0 + 300_000, 2.0],
        [t0 + 300_000, 2.5],  # duplicate
        [t0 + 900_000, None],
        [t0 + 1_200_000, "abc"],
        [t0 + 1_500_000],
        [(t0 + 1_800_000) // 1000, 4.0],  # seconds instead of ms: 1970
        [t0 + 2_100_000, -1.0],
        [t0 + 2_400_000, float("nan")],
    ]
    payload = {
        "prices": prices,
        "market_caps": [[t0, 10.0], [t0 + 300_000, -1]],
        "total_volumes": [[t0, 5.0]],
    }
    result = parse_market_chart(payload, now=datetime(2024, 1, 2, tzinfo=UTC))
    assert [p.price for p in result.records] == [1.0, 2.0, 3.0]
    assert result.records[0].market_cap == 10.0 and result.records[0].total_volume == 5.0
    assert result.records[1].market_cap is None
    reasons = [(r.series, r.index) for r in result.rejects]
    assert ("prices", 3) in reasons and ("market_caps", 1) in reasons
    assert len([r for r in result.rejects if r.series == "prices"]) == 7
    with pytest.raises(CoinGeckoShapeError, match="market_chart"):
        parse_market_chart([[t0, 1.0]])


def test_ohlc_rows_validated_and_close_time_converts_to_bucket_start():
    close = datetime(2024, 3, 2, 16, tzinfo=UTC)
    ms = int(close.timestamp() * 1000)
    rows = [
        [ms, 10.0, 12.0, 9.0, 11.0],
        [ms - 1_800_000, 9.5, 10.5, 9.0, 10.0],
        [ms, 10.0, 12.0, 9.0, 11.0],  # duplicate
        [ms + 1_800_000, 11.0, 10.0, 9.0, 11.5],  # high below close
        [ms + 3_600_000, 11.0, 12.0],
        [ms + 5_400_000, None, 12.0, 10.0, 11.0],
    ]
    result = parse_ohlc(rows, now=close)
    assert [r.close_time for r in result.records] == [close - timedelta(minutes=30), close]
    assert sorted(r.index for r in result.rejects) == [2, 3, 4, 5]
    assert result.records[1].bucket_start(ohlc_candle_seconds(1)) == close - timedelta(minutes=30)
    assert ohlc_bucket_start(close, timedelta(hours=4)) == datetime(2024, 3, 2, 12, tzinfo=UTC)


def test_candle_sizes_follow_the_documented_rules():
    assert [ohlc_candle_seconds(d) for d in (1, 2, 7, 14, 30, 90, 365, "max")] == [
        1800, 1800, 14400, 14400, 14400, 345600, 345600, 345600,
    ]  # fmt: skip
    assert ohlc_candle_seconds(90, "daily") == 86400 and ohlc_candle_seconds(7, "hourly") == 3600


def test_simple_price_rejects_bad_entries_only():
    payload = {
        "bitcoin": {"usd": 1.5, "usd_market_cap": 10, "last_updated_at": 1711356300},
        "eth": {"usd": "NaN"},
        "x": {"usd": None},
        "y": "nope",
    }
    result = parse_simple_price(payload, "usd", now=datetime(2024, 3, 26, tzinfo=UTC))
    assert [r.id for r in result.records] == ["bitcoin"]
    assert result.records[0].last_updated_at == datetime.fromtimestamp(1711356300, tz=UTC)
    assert len(result.rejects) == 3
