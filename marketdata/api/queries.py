"""Reads behind the public API: raw SQL returning tuples (no model instances on hot paths).

Every function here runs exactly the queries its docstring says; the tests assert those counts.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection

from marketdata.models import TIMEFRAME_DELTA

#: Columns of a candle in API order (``time`` is ``bucket_start``).
CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volume", "volume_24h", "closed", "filled")

# upstream id → (coin id, symbol, name): coins are never deleted and their ids never change, so a
# per-process memo is safe (it is not shared state: every process learns the same immutable facts).
_coin_memo: dict[str, tuple[int, str, str]] = {}
_coin_memo_lock = threading.Lock()


def coin_ref(upstream_id: str) -> tuple[int, str, str] | None:
    """(id, symbol, name) of a coin by upstream id: 0 queries when known to this process, else 1."""
    ref = _coin_memo.get(upstream_id)
    if ref is not None:
        return ref
    with connection.cursor() as cur:
        cur.execute("SELECT id, symbol, name FROM marketdata_coin WHERE upstream_id = %s", [upstream_id])
        row = cur.fetchone()
    if row is None:
        return None
    with _coin_memo_lock:
        if len(_coin_memo) > 100_000:
            _coin_memo.clear()
        _coin_memo[upstream_id] = (row[0], row[1], row[2])
    return _coin_memo[upstream_id]


def coin_refs(upstream_ids: list[str]) -> dict[str, int]:
    """upstream id → coin id for the known ones (1 query)."""
    with connection.cursor() as cur:
        cur.execute("SELECT upstream_id, id FROM marketdata_coin WHERE upstream_id = ANY(%s)", [upstream_ids])
        return dict(cur.fetchall())


def _bounds_sql(start, end, cursor_us, order) -> tuple[str, list]:
    sql, args = "", []
    if start is not None:
        sql += " AND bucket_start >= %s"
        args.append(start)
    if end is not None:
        sql += " AND bucket_start < %s"
        args.append(end)
    if cursor_us is not None:
        at = datetime.fromtimestamp(0, tz=UTC) + timedelta(microseconds=cursor_us)
        sql += " AND bucket_start > %s" if order == "asc" else " AND bucket_start < %s"
        args.append(at)
    return sql, args


_CANDLE_JSON = (
    "json_build_object('time', to_char(bucket_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "'open', open, 'high', high, 'low', low, 'close', close, 'volume', volume, 'volume_24h', volume_24h, "
    "'closed', closed, 'filled', filled)"
)


def candles_page_json(
    *, coin_id: int, timeframe: str, start, end, cursor_us: int | None, order: str, limit: int
) -> tuple[bool, bool, datetime | None, str]:
    """One page of candles rendered as a JSON array by PostgreSQL (1 query, one index scan).

    Returns (more rows exist, every row is closed, bucket_start of the last row, JSON array text).
    PostgreSQL formats the rows (floats in shortest round-trip form, times ISO 8601 UTC): no Python
    object per value, which is most of the cost of a 5,000-row page.
    """
    bounds, args = _bounds_sql(start, end, cursor_us, order)
    direction = "ASC" if order == "asc" else "DESC"
    sql = (
        "WITH page AS (SELECT bucket_start, open, high, low, close, volume, volume_24h, closed, filled "  # noqa: S608
        f"FROM marketdata_candle WHERE coin_id = %s AND timeframe = %s{bounds} "
        f"ORDER BY bucket_start {direction} LIMIT %s), "
        f"numbered AS (SELECT row_number() OVER (ORDER BY bucket_start {direction}) AS n, * FROM page) "
        "SELECT count(*) > %s, COALESCE(bool_and(closed) FILTER (WHERE n <= %s), true), "
        "max(bucket_start) FILTER (WHERE n = %s), "
        f"COALESCE(json_agg({_CANDLE_JSON} ORDER BY n) FILTER (WHERE n <= %s), '[]')::text FROM numbered"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [coin_id, timeframe, *args, limit + 1, limit, limit, limit, limit])
        more, closed, last, text = cur.fetchone()
    return more, closed, last, text


def series_arrays(*, coin_id: int, timeframe: str, end=None) -> dict[str, np.ndarray]:
    """The whole stored series up to ``end`` (exclusive), oldest first, as arrays: 1 query.

    ``time`` is int64 epoch microseconds; ``closed`` bool; ``high``/``low``/``close`` float64.
    """
    sql = (
        "SELECT (extract(epoch FROM bucket_start) * 1000000)::int8, high, low, close, closed "
        "FROM marketdata_candle WHERE coin_id = %s AND timeframe = %s"
    )
    args: list = [coin_id, timeframe]
    if end is not None:
        sql += " AND bucket_start < %s"
        args.append(end)
    sql += " ORDER BY bucket_start"
    with connection.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    if not rows:
        empty = np.empty(0)
        return {
            "time": np.empty(0, dtype=np.int64),
            "high": empty,
            "low": empty,
            "close": empty,
            "closed": np.empty(0, dtype=bool),
        }
    time, high, low, close, closed = zip(*rows, strict=True)
    return {
        "time": np.fromiter(time, dtype=np.int64, count=len(rows)),
        "high": np.fromiter(high, dtype=np.float64, count=len(rows)),
        "low": np.fromiter(low, dtype=np.float64, count=len(rows)),
        "close": np.fromiter(close, dtype=np.float64, count=len(rows)),
        "closed": np.fromiter(closed, dtype=bool, count=len(rows)),
    }


def bucket_is_open(timeframe: str, t: datetime, now: datetime) -> bool:
    return t + TIMEFRAME_DELTA[timeframe] > now


_SNAPSHOT_COLUMNS = (
    "c.upstream_id, c.symbol, c.name, s.price, s.market_cap, s.rank, s.volume_24h, s.high_24h, "
    "s.low_24h, s.change_24h_pct, s.last_updated"
)


def coins_page(*, q: str | None, active: bool | None, after: str | None, limit: int) -> list[tuple]:
    """Coins ordered by upstream id (1 query): (id, symbol, name, active, first_seen, last_seen)."""
    sql = "SELECT upstream_id, symbol, name, active, first_seen, last_seen FROM marketdata_coin WHERE true"
    args: list = []
    if q:
        sql += " AND (upstream_id ILIKE %s OR lower(symbol) = lower(%s) OR name ILIKE %s)"
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [like, q, like]
    if active is not None:
        sql += " AND active = %s"
        args.append(active)
    if after is not None:
        sql += " AND upstream_id > %s"
        args.append(after)
    sql += " ORDER BY upstream_id LIMIT %s"
    args.append(limit)
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def coin_detail(upstream_id: str) -> tuple | None:
    """Coin + its snapshot columns (1 query): upstream_id, symbol, name, active, first_seen, last_seen,
    then price … last_updated (None when there is no snapshot)."""
    sql = (
        "SELECT c.upstream_id, c.symbol, c.name, c.active, c.first_seen, c.last_seen, s.price, "
        "s.market_cap, s.rank, s.volume_24h, s.high_24h, s.low_24h, s.change_24h_pct, s.last_updated, "
        "s.fetched_at FROM marketdata_coin c LEFT JOIN marketdata_marketsnapshot s ON s.coin_id = c.id "
        "WHERE c.upstream_id = %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [upstream_id])
        return cur.fetchone()


MARKET_ORDER = {
    "market_cap": "s.market_cap",
    "volume": "s.volume_24h",
    "change": "s.change_24h_pct",
    "price": "s.price",
    "rank": "s.rank",
}


def markets_page(
    *, ids: list[str] | None, order_by: str, descending: bool, offset: int, limit: int
) -> list[tuple]:
    """Latest snapshots joined with their coins (1 query), in ``_SNAPSHOT_COLUMNS`` order."""
    column = MARKET_ORDER[order_by]
    direction = "DESC" if descending else "ASC"
    sql = (
        f"SELECT {_SNAPSHOT_COLUMNS} FROM marketdata_marketsnapshot s "  # noqa: S608
        "JOIN marketdata_coin c ON c.id = s.coin_id WHERE true"
    )
    args: list = []
    if ids is not None:
        sql += " AND c.upstream_id = ANY(%s)"
        args.append(ids)
    sql += f" ORDER BY {column} {direction} NULLS LAST, c.upstream_id OFFSET %s LIMIT %s"
    args += [offset, limit]
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def iso_sql(column: str) -> str:
    """SQL rendering a timestamptz as orjson does (ISO 8601 UTC, 'Z', microseconds only if non-zero)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN {column} IS NULL THEN NULL WHEN date_trunc('second', {column}) = {column} "
        f'THEN to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') '
        f'ELSE to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
    )


def prices_json(ids: list[str]) -> tuple[str, list[str]]:
    """Latest price data of the known ids with a snapshot, as a JSON object keyed by coin id rendered
    by PostgreSQL, and the ids found (1 query)."""
    sql = (
        "SELECT COALESCE(json_object_agg(c.upstream_id, json_build_object("  # noqa: S608
        "'price', s.price, 'market_cap', s.market_cap, 'volume_24h', s.volume_24h, "
        f"'change_24h_pct', s.change_24h_pct, 'last_updated', {iso_sql('s.last_updated')}) "
        "ORDER BY c.upstream_id), '{}')::text, COALESCE(array_agg(c.upstream_id), '{}') "
        "FROM marketdata_coin c JOIN marketdata_marketsnapshot s ON s.coin_id = c.id "
        "WHERE c.upstream_id = ANY(%s)"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [ids])
        text, found = cur.fetchone()
    return text, list(found)


def market_caps_at(at: datetime, timeframe: str = "1h") -> dict[int, tuple[str, str, float]]:
    """coin id → (upstream id, symbol, market cap) at the close of the last ``timeframe`` bucket that
    ended at or before ``at`` (1 query; served by the bucket_start index of the 1h partition)."""
    delta = TIMEFRAME_DELTA[timeframe]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    bucket = epoch + ((at - epoch) // delta) * delta - delta
    sql = (
        "SELECT k.coin_id, c.upstream_id, c.symbol, k.market_cap FROM marketdata_candle k "
        "JOIN marketdata_coin c ON c.id = k.coin_id "
        "WHERE k.timeframe = %s AND k.bucket_start = %s AND k.market_cap IS NOT NULL AND k.market_cap > 0"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [timeframe, bucket])
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}


def snapshot_market_caps() -> dict[int, tuple[str, str, float]]:
    """coin id → (upstream id, symbol, market cap) from the latest snapshots (1 query)."""
    sql = (
        "SELECT s.coin_id, c.upstream_id, c.symbol, s.market_cap FROM marketdata_marketsnapshot s "
        "JOIN marketdata_coin c ON c.id = s.coin_id WHERE s.market_cap IS NOT NULL AND s.market_cap > 0"
    )
    with connection.cursor() as cur:
        cur.execute(sql)
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}
