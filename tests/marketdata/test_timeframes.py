"""Timeframes 4h and 1w (roll-ups of 1h and 1d, on the UTC grid; weeks start Monday 00:00 UTC), and the
candle columns ``samples`` (ticks behind a candle) and ``partial`` (bucket started before our first
observation), checked against independent computations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from marketdata import selectors, services
from marketdata.models import TIMEFRAME_DELTA, rollup_targets
from marketdata.services import CandleRow, TickIn


def stored(coin_id: int, timeframe: str) -> dict[datetime, dict]:
    rows = selectors.candles_range(coin_id=coin_id, timeframe=timeframe, limit=100_000, newest_first=False)
    return {r[0]: dict(zip(selectors.CANDLE_FIELDS, r, strict=True)) for r in rows}


def monday(t: datetime) -> datetime:
    """Independent week floor: the date's Monday, midnight UTC."""
    d = t.astimezone(UTC).date()
    d -= timedelta(days=d.weekday())
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def four_hours(t: datetime) -> datetime:
    return t.replace(hour=t.hour - t.hour % 4, minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("timeframe", "t", "floor"),
    [
        ("4h", datetime(2026, 11, 24, 3, 59, 59, tzinfo=UTC), datetime(2026, 11, 24, 0, tzinfo=UTC)),
        ("4h", datetime(2026, 11, 24, 4, tzinfo=UTC), datetime(2026, 11, 24, 4, tzinfo=UTC)),
        ("4h", datetime(2026, 11, 24, 23, 30, tzinfo=UTC), datetime(2026, 11, 24, 20, tzinfo=UTC)),
        # 2026-11-29 is a Sunday: its week began on Monday the 23rd
        ("1w", datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)),
        ("1w", datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
        ("1w", datetime(2026, 12, 2, 12, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
        # the Unix epoch was a Thursday: its week began on Monday 1969-12-29
        ("1w", datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 29, tzinfo=UTC)),
        ("1d", datetime(2026, 11, 29, 23, 59, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)),
        ("1h", datetime(2026, 11, 29, 13, 34, tzinfo=UTC), datetime(2026, 11, 29, 13, tzinfo=UTC)),
    ],
)
def test_bucket_floor_4h_on_the_utc_grid_and_weeks_from_monday(timeframe, t, floor):
    assert services.bucket_floor(timeframe, t) == floor


def test_bucket_floor_of_weeks_is_always_a_monday_midnight():
    t = datetime(2024, 1, 1, tzinfo=UTC)
    for h in range(0, 3 * 366 * 24, 7):
        x = t + timedelta(hours=h)
        assert services.bucket_floor("1w", x) == monday(x), x
        assert services.bucket_floor("4h", x) == four_hours(x), x


def test_rollup_targets_follow_the_sources():
    assert rollup_targets("1h") == ("4h", "1d", "1w")
    assert rollup_targets("1d") == ("1w",)
    assert rollup_targets("4h") == ()
    assert rollup_targets("1w") == ()
    assert rollup_targets("1m") == ("5m", "15m", "1h", "4h", "1d", "1w")


def _random_hourly(
    coin_id: int, start: datetime, hours: int, seed: int, gaps: bool = True
) -> list[CandleRow]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
    opn = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.004, hours))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.004, hours))
    keep = rng.uniform(size=hours) > (0.08 if gaps else -1)
    rows = []
    for i in range(hours):
        if not keep[i] and i:
            continue
        rows.append(
            CandleRow(
                coin_id,
                "1h",
                start + timedelta(hours=i),
                float(opn[i]),
                float(high[i]),
                float(low[i]),
                float(close[i]),
                None if i % 5 == 0 else float(rng.uniform(0, 10)),
                None if i % 3 == 0 else float(rng.uniform(1e6, 2e6)),
                float(close[i] * 1e6),
                None,
                bool(i % 11 == 0),
                int(rng.integers(1, 200)),
            )
        )
    return rows


def aggregate(parts: list[dict], floor, step: timedelta, now: datetime) -> dict[datetime, tuple]:
    """Independent roll-up of stored candles: group by ``floor``, OHLC first/max/min/last, volume
    sum (null if all null), volume_24h and market cap last non-null, filled all, samples sum."""
    groups: dict[datetime, list[dict]] = {}
    for p in sorted(parts, key=lambda r: r["bucket_start"]):
        groups.setdefault(floor(p["bucket_start"]), []).append(p)
    out = {}
    for b, g in groups.items():
        vols = [p["volume"] for p in g if p["volume"] is not None]
        v24 = [p["volume_24h"] for p in g if p["volume_24h"] is not None]
        caps = [p["market_cap"] for p in g if p["market_cap"] is not None]
        samples = [p["samples"] for p in g]
        out[b] = (
            g[0]["open"],
            max(p["high"] for p in g),
            min(p["low"] for p in g),
            g[-1]["close"],
            sum(vols) if vols else None,
            v24[-1] if v24 else None,
            caps[-1] if caps else None,
            b + step <= now,
            all(p["filled"] for p in g),
            None if None in samples else sum(samples),
        )
    return out


def shape(rows: dict[datetime, dict]) -> dict[datetime, tuple]:
    keys = (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "volume_24h",
        "market_cap",
        "closed",
        "filled",
        "samples",
    )
    return {b: tuple(r[k] for k in keys) for b, r in rows.items()}


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for b, e in expected.items():
        g = got[b]
        assert g[:4] == e[:4], b  # selected values: exact
        assert (g[4] is None) == (e[4] is None) and (
            g[4] is None or g[4] == pytest.approx(e[4], rel=1e-12)
        ), b
        assert g[5:] == e[5:], b


def test_4h_and_1w_rollups_equal_aggregating_the_stored_1h_and_1d_candles(coins):
    # 40 days of hours from a Thursday 05:00 (neither a 4h nor a week boundary), ending mid-week
    start = datetime(2026, 9, 3, 5, tzinfo=UTC)
    hours = 40 * 24 + 7
    now = start + timedelta(hours=hours) - timedelta(minutes=20)  # the current buckets are open
    rows = _random_hourly(coins[0], start, hours, seed=11)
    written = services.candles_upsert(rows=rows, source="test", now=now)
    rolled = services.candles_rollup_result(written, now=now)
    assert set(rolled) == {"4h", "1d", "1w"}

    hourly = list(stored(coins[0], "1h").values())
    got_4h = stored(coins[0], "4h")
    assert_same(shape(got_4h), aggregate(hourly, four_hours, timedelta(hours=4), now))
    assert all(b.hour % 4 == 0 and b.minute == 0 for b in got_4h)

    daily = list(stored(coins[0], "1d").values())
    got_1w = stored(coins[0], "1w")
    assert_same(shape(got_1w), aggregate(daily, monday, timedelta(weeks=1), now))
    assert all(b.weekday() == 0 and b.hour == 0 for b in got_1w)
    # and the weeks equal aggregating the hours directly (1d is itself the hours' roll-up)
    assert_same(shape(got_1w), aggregate(hourly, monday, timedelta(weeks=1), now))
    assert len(got_1w) == 7  # Thu 3 Sep … Sun 13 Oct 2026 + the open week: weeks of 31 Aug … 12 Oct
    assert not got_1w[max(got_1w)]["closed"]


def test_week_boundary_sunday_and_monday_days_are_in_different_weeks(coins):
    sunday = datetime(2026, 11, 22, tzinfo=UTC)
    rows = [
        CandleRow(coins[0], "1d", sunday, 10.0, 12.0, 9.0, 11.0, market_cap=1.0),
        CandleRow(coins[0], "1d", sunday + timedelta(days=1), 11.0, 15.0, 10.5, 14.0, market_cap=2.0),
        CandleRow(coins[0], "1d", sunday + timedelta(days=7), 14.0, 14.5, 13.0, 13.5, market_cap=3.0),
    ]
    now = sunday + timedelta(days=30)
    result = services.candles_upsert(rows=rows, source="ohlc", now=now)
    rolled = services.candles_rollup_result(result, now=now)
    assert set(rolled) == {"1w"}  # a daily write rolls up into weeks only
    weeks = stored(coins[0], "1w")
    assert sorted(weeks) == [sunday - timedelta(days=6), sunday + timedelta(days=1)]
    sun_week, mon_week = weeks[sunday - timedelta(days=6)], weeks[sunday + timedelta(days=1)]
    assert (sun_week["open"], sun_week["close"], sun_week["market_cap"]) == (10.0, 11.0, 1.0)
    # Monday 23rd and Sunday 29th (the week's last day) are one week
    assert (mon_week["open"], mon_week["high"], mon_week["low"], mon_week["close"]) == (
        11.0,
        15.0,
        10.5,
        13.5,
    )
    assert mon_week["market_cap"] == 3.0
    # the first week's Monday…Saturday are missing and no earlier day exists: it is partial
    assert sun_week["partial"] is True and mon_week["partial"] is False
    assert sun_week["samples"] is None  # upstream daily candles have no observation count


def test_candles_upsert_keeps_accepting_rows_without_samples_and_partial(coins):
    t = datetime(2026, 11, 24, 4, tzinfo=UTC)
    twelve = (coins[0], "4h", t, 1.0, 2.0, 0.5, 1.5, None, None, None, None, False)  # an older caller's row
    mapping = {
        "coin_id": coins[0],
        "timeframe": "1w",
        "bucket_start": datetime(2026, 11, 23, tzinfo=UTC),
        "open": 1.0,
        "high": 1.0,
        "low": 1.0,
        "close": 1.0,
    }
    result = services.candles_upsert(rows=[twelve, mapping], source="test")
    assert result.inserted == 2
    row = stored(coins[0], "4h")[t]
    assert (row["samples"], row["partial"]) == (None, False)
    bad = services.candles_upsert(
        rows=[
            CandleRow(coins[0], "1w", datetime(2026, 11, 24, tzinfo=UTC), 1.0, 1.0, 1.0, 1.0),  # a Tuesday
            CandleRow(coins[0], "4h", datetime(2026, 11, 24, 2, tzinfo=UTC), 1.0, 1.0, 1.0, 1.0),
        ],
        source="test",
    )
    assert bad.reasons == {"time not aligned to timeframe": 2}


# --- samples and partial from ticks ------------------------------------------------------------------
def test_ticks_starting_1334_make_partial_1m_to_1w_buckets_and_count_samples(coins):
    """The coin is first observed at 13:34:10: the 13:34 minute and the 13:30 5m, 13:30 15m, 13:00 1h,
    12:00 4h, 00:00 1d and Monday 1w buckets started before that: partial. Later buckets are full."""
    coin = coins[0]
    first = datetime(2026, 11, 25, 13, 34, 10, tzinfo=UTC)  # a Wednesday
    ticks = [TickIn(coin, first + timedelta(seconds=20 * i), 100.0 + i * 0.1, 1e6, 5e8) for i in range(200)]
    services.ticks_record(ticks=ticks)
    now = first + timedelta(seconds=20 * 200)  # 14:40:50
    built = services.candles_build_1m(since=first, until=now, now=now)
    services.candles_rollup(since=first.replace(second=0), until=now, coin_ids=[coin], now=now)

    minutes = stored(coin, "1m")
    assert minutes[datetime(2026, 11, 25, 13, 34, tzinfo=UTC)]["partial"] is True
    assert [b for b, r in minutes.items() if r["partial"]] == [datetime(2026, 11, 25, 13, 34, tzinfo=UTC)]
    # 13:34:10, :30, :50 → 3 ticks; then 3 per minute
    assert minutes[datetime(2026, 11, 25, 13, 34, tzinfo=UTC)]["samples"] == 3
    assert all(r["samples"] == 3 for b, r in minutes.items() if b.minute != 40 and b.hour == 14)
    assert sum(r["samples"] for r in minutes.values()) == 200
    assert built.inserted == len(minutes)

    partial_at = {
        "5m": datetime(2026, 11, 25, 13, 30, tzinfo=UTC),
        "15m": datetime(2026, 11, 25, 13, 30, tzinfo=UTC),
        "1h": datetime(2026, 11, 25, 13, tzinfo=UTC),
        "4h": datetime(2026, 11, 25, 12, tzinfo=UTC),
        "1d": datetime(2026, 11, 25, tzinfo=UTC),
        "1w": datetime(2026, 11, 23, tzinfo=UTC),
    }
    for tf, b in partial_at.items():
        rows = stored(coin, tf)
        assert rows[b]["partial"] is True, tf
        assert all(not r["partial"] for k, r in rows.items() if k != b), tf
        # samples sum up through every roll-up
        assert sum(r["samples"] for r in rows.values()) == 200, tf
    assert stored(coin, "1h")[datetime(2026, 11, 25, 14, tzinfo=UTC)]["partial"] is False
    assert stored(coin, "1h")[datetime(2026, 11, 25, 13, tzinfo=UTC)]["open"] == 100.0  # the 13:34 price

    # rebuilding a later window does not make its first minute partial (an older candle exists)
    again = services.candles_build_1m(since=first + timedelta(minutes=30), until=now, now=now)
    assert again.written == 0


def test_a_missing_bucket_after_the_first_observation_is_a_gap_not_partial(coins):
    coin = coins[1]
    t = datetime(2026, 11, 25, 10, tzinfo=UTC)
    # hours 10, 11, then nothing at 12 and 13, then 14, 15: the 12:00 4h bucket lacks its first hour
    rows = [CandleRow(coin, "1h", t + timedelta(hours=h), 1.0, 1.0, 1.0, 1.0) for h in (0, 1, 4, 5)]
    now = t + timedelta(days=3)
    services.candles_rollup_result(services.candles_upsert(rows=rows, source="ohlc", now=now), now=now)
    fours = stored(coin, "4h")
    assert {b.hour: r["partial"] for b, r in fours.items()} == {8: True, 12: False}
    # upstream candles themselves are full
    assert not any(r["partial"] for r in stored(coin, "1h").values())


def test_history_filled_candles_replace_a_partial_bucket_with_a_full_one(coins):
    coin = coins[2]
    b = datetime(2026, 11, 25, 13, tzinfo=UTC)
    now = b + timedelta(days=2)
    services.candles_upsert(
        rows=[CandleRow(coin, "1h", b, 2.0, 2.0, 2.0, 2.0, samples=40, partial=True)],
        source="rollup",
        now=now,
    )
    assert stored(coin, "1h")[b]["partial"] is True
    result = services.candles_upsert(
        rows=[CandleRow(coin, "1h", b, 1.0, 2.5, 0.9, 2.0)], source="ohlc", now=now
    )
    assert result.updated == 1
    row = stored(coin, "1h")[b]
    assert (row["partial"], row["samples"], row["open"]) == (False, None, 1.0)


def test_step_lengths_of_the_new_timeframes():
    assert TIMEFRAME_DELTA["4h"] == timedelta(hours=4)
    assert TIMEFRAME_DELTA["1w"] == timedelta(days=7)


def test_a_partial_rollup_never_replaces_a_full_upstream_candle(coins):
    """Daily history from upstream, then hourly history that starts at 14:00 of a day: that day's
    roll-up from the hours would be partial; the full upstream daily candle stays."""
    coin = coins[1]
    day = datetime(2026, 11, 10, tzinfo=UTC)
    now = day + timedelta(days=5)
    daily = [
        CandleRow(coin, "1d", day + timedelta(days=d), 5.0, 9.0, 4.0, 6.0 + d, market_cap=1.0)
        for d in range(3)
    ]
    services.candles_rollup_result(services.candles_upsert(rows=daily, source="ohlc", now=now), now=now)
    hours = [
        CandleRow(coin, "1h", day + timedelta(hours=h), 6.0, 6.5, 5.5, 6.2, market_cap=2.0)
        for h in range(14, 48)
    ]
    services.candles_rollup_result(services.candles_upsert(rows=hours, source="ohlc", now=now), now=now)
    days = stored(coin, "1d")
    assert (days[day]["open"], days[day]["partial"], days[day]["market_cap"]) == (
        5.0,
        False,
        1.0,
    )  # upstream's
    nxt = days[day + timedelta(days=1)]  # a whole day of hours: rolled up from them, full
    assert (nxt["open"], nxt["close"], nxt["partial"], nxt["market_cap"]) == (6.0, 6.2, False, 2.0)
    assert stored(coin, "4h")[day + timedelta(hours=12)]["partial"] is True  # no upstream 4h: partial
