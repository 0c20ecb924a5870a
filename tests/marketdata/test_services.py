"""The candle write path: idempotency, no rewrite of unchanged rows, dedupe, validation, cache bumps."""

from __future__ import annotations

import math
from datetime import timedelta

from django.db import connection

from marketdata import cache, selectors, services
from marketdata.services import CandleRow


def _xmins(coin_id: int, timeframe: str = "1m") -> dict:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT bucket_start, xmin::text, revision, updated_at FROM marketdata_candle "
            "WHERE coin_id = %s AND timeframe = %s",
            [coin_id, timeframe],
        )
        return {r[0]: r[1:] for r in cur.fetchall()}


def _rows(coin_id, t0, n, price=100.0):
    return [
        CandleRow(
            coin_id,
            "1m",
            t0 + timedelta(minutes=i),
            price + i,
            price + i + 1,
            price + i - 1,
            price + i + 0.5,
            3.0,
        )
        for i in range(n)
    ]


def test_replaying_a_batch_changes_nothing_and_rewrites_no_row(coins, t0):
    rows = _rows(coins[0], t0, 30)
    first = services.candles_upsert(rows=rows, source="test")
    assert (first.inserted, first.updated, first.unchanged) == (30, 0, 0)
    before = _xmins(coins[0])

    again = services.candles_upsert(rows=rows, source="other-source")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 30)
    assert again.spans == {}
    assert _xmins(coins[0]) == before  # same tuple versions: nothing rewritten, not even updated_at


def test_a_changed_row_is_updated_alone_and_counts_a_revision(coins, t0):
    rows = _rows(coins[0], t0, 10)
    services.candles_upsert(rows=rows, source="test")
    before = _xmins(coins[0])
    changed = rows[4]._replace(close=rows[4].close + 0.25)
    result = services.candles_upsert(rows=[*rows[:4], changed, *rows[5:]], source="test")
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 9)
    after = _xmins(coins[0])
    for ts, (xmin, revision, _updated_at) in after.items():
        if ts == changed.bucket_start:
            assert xmin != before[ts][0] and revision == 1
        else:
            assert after[ts] == before[ts]
    assert result.spans == {"1m": (changed.bucket_start, changed.bucket_start)}


def test_duplicate_keys_in_one_batch_keep_the_last(coins, t0):
    a = CandleRow(coins[0], "1m", t0, 1.0, 2.0, 0.5, 1.5)
    b = a._replace(close=1.9)
    c = a._replace(bucket_start=t0 + timedelta(minutes=1))
    result = services.candles_upsert(rows=[a, c, b], source="test")
    assert (result.inserted, result.duplicates) == (2, 1)
    stored = selectors.candles_range(coin_id=coins[0], timeframe="1m", newest_first=False)
    assert [r[4] for r in stored] == [1.9, 1.5]


def test_invalid_rows_are_rejected_with_reasons_and_the_rest_land(coins, t0):
    good = CandleRow(coins[0], "1m", t0, 1.0, 2.0, 0.5, 1.5, 10.0)
    bad = [
        good._replace(bucket_start=t0 + timedelta(minutes=1), high=0.9),  # high below close
        good._replace(bucket_start=t0 + timedelta(minutes=2), open=math.nan),
        good._replace(bucket_start=t0 + timedelta(minutes=3), close=math.inf, high=math.inf),
        good._replace(bucket_start=t0 + timedelta(seconds=30)),  # not a bucket start
        good._replace(bucket_start=t0 + timedelta(minutes=4), volume=-1.0),
        good._replace(coin_id=999_999_999),
        good._replace(timeframe="2m"),
        good._replace(timeframe="5m", bucket_start=t0 + timedelta(minutes=1)),
    ]
    result = services.candles_upsert(rows=[*bad, good], source="test")
    assert result.inserted == 1
    assert result.rejected == len(bad)
    assert result.reasons == {
        "low/high do not bound open/close": 1,
        "price negative or not finite": 2,
        "time not aligned to timeframe": 2,
        "volume negative or not finite": 1,
        "unknown coin": 1,
        "unknown timeframe": 1,
    }
    assert len(selectors.candles_range(coin_id=coins[0], timeframe="1m")) == 1


def test_closed_defaults_to_whether_the_bucket_has_ended(coins, t0):
    now = t0 + timedelta(minutes=5, seconds=30)
    rows = [CandleRow(coins[0], "1m", t0 + timedelta(minutes=i), 1.0, 1.0, 1.0, 1.0) for i in range(6)]
    services.candles_upsert(rows=rows, source="test", now=now)
    stored = selectors.candles_range(coin_id=coins[0], timeframe="1m", newest_first=False, fields=("closed",))
    assert [c for (c,) in stored] == [True] * 5 + [False]


def test_changed_series_get_their_cache_version_bumped_after_commit(
    coins, t0, django_capture_on_commit_callbacks
):
    rows = _rows(coins[0], t0, 3)
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(rows=rows, source="test")
    assert cache.candles_version(coins[0], "1m") == 1
    assert cache.candles_version(coins[1], "1m") == 0
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.candles_upsert(rows=rows, source="test")  # no change: no bump
    assert callbacks == []
    assert cache.candles_version(coins[0], "1m") == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.candles_upsert(rows=[rows[0]._replace(low=0.5)], source="test")
    assert cache.candles_versions([(coins[0], "1m"), (coins[0], "5m")]) == [2, 0]


def test_ticks_seen_twice_count_once(coins, t0):
    ticks = [services.TickIn(coins[0], t0 + timedelta(seconds=10 * i), 1.0 + i) for i in range(5)]
    first = services.ticks_record(ticks=[*ticks, ticks[0]])
    assert (first.inserted, first.duplicates) == (5, 1)
    again = services.ticks_record(ticks=ticks[2:])
    assert (again.inserted, again.duplicates) == (0, 3)
    bad = services.ticks_record(
        ticks=[services.TickIn(coins[0], t0, -1.0), services.TickIn(coins[0], t0, math.nan)]
    )
    assert bad.rejected == 2


def test_coins_upsert_is_idempotent_and_reactivates(db):
    ids = services.coins_upsert(coins=[services.CoinIn("a", "A", "Alpha"), services.CoinIn("b", "B", "Beta")])
    assert services.coins_mark_inactive(keep_upstream_ids=["a"]) == 1
    again = services.coins_upsert(coins=[services.CoinIn("b", "BB", "Beta 2")])
    assert again == {"b": ids["b"]}
    from marketdata.models import Coin

    b = Coin.objects.get(upstream_id="b")
    assert (b.active, b.symbol, b.name) == (True, "BB", "Beta 2")
    # nothing changed: the ids still come back, and no row is rewritten
    with connection.cursor() as cur:
        cur.execute("SELECT xmin::text FROM marketdata_coin ORDER BY id")
        before = cur.fetchall()
        unchanged = services.coins_upsert(
            coins=[services.CoinIn("a", "A", "Alpha"), services.CoinIn("b", "BB", "Beta 2")]
        )
        cur.execute("SELECT xmin::text FROM marketdata_coin ORDER BY id")
        assert cur.fetchall() == before
    assert unchanged == ids


def test_snapshot_with_older_upstream_time_does_not_overwrite(coins, t0):
    def snap(price, at):
        return services.SnapshotIn(coins[0], price, 1e9, 1, 1e6, None, None, None, at, at)

    assert services.snapshots_upsert(rows=[snap(10.0, t0 + timedelta(minutes=1))]) == 1
    assert services.snapshots_upsert(rows=[snap(9.0, t0)]) == 0
    assert services.snapshots_upsert(rows=[snap(11.0, t0 + timedelta(minutes=2))]) == 1
    assert selectors.snapshot_prices(coin_ids=coins) == {coins[0]: (11.0, t0 + timedelta(minutes=2))}
