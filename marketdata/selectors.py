"""Every read of the market data tables: the public API, the screener, data quality and the pipeline
read through here (writes go through :mod:`marketdata.services`).

Hot reads are raw SQL returning tuples (no model instances on request paths); each function runs
exactly the queries its docstring says, and the tests assert those counts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from django.db import connection
from django.db.models import F, Q

from marketdata.models import BUCKET_ORIGIN, TIMEFRAME_DELTA, TIMEFRAMES, Candle, Coin, SeriesWatermark
from marketdata.screener import FIELDS as SCREENER_FIELDS

#: Columns of a candle as returned by :func:`candles_range`, in order.
CANDLE_FIELDS = (
    "bucket_start",
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
    "partial",
)
#: Columns of a candle in API order (``time`` is ``bucket_start``).
CANDLE_COLUMNS = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "volume_24h",
    "closed",
    "filled",
    "samples",
    "partial",
)


# --- coins -----------------------------------------------------------------------------------------
# upstream id → (coin id, symbol, name): coins are never deleted and their ids never change, so a
# per-process memo is safe (it is not shared state: every process learns the same immutable facts).
_coin_memo: dict[str, tuple[int, str, str]] = {}
_coin_memo_lock = threading.Lock()


def coin_memo_clear() -> None:
    """Forget the coin memo of this process (as a freshly started process would)."""
    with _coin_memo_lock:
        _coin_memo.clear()


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


def coins_known(upstream_ids: list[str]) -> set[str]:
    """The ids of ``upstream_ids`` that are coins: 0 queries when all are known to this process (the
    memo of :func:`coin_ref`), else 1 for the rest."""
    known = {u for u in upstream_ids if u in _coin_memo}
    rest = [u for u in upstream_ids if u not in known]
    if rest:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT upstream_id, id, symbol, name FROM marketdata_coin WHERE upstream_id = ANY(%s)",
                [rest],
            )
            rows = cur.fetchall()
        with _coin_memo_lock:
            if len(_coin_memo) > 100_000:
                _coin_memo.clear()
            for upstream_id, pk, symbol, name in rows:
                _coin_memo[upstream_id] = (pk, symbol, name)
                known.add(upstream_id)
    return known


def coin_refs(upstream_ids: list[str]) -> dict[str, int]:
    """upstream id → coin id for the known ones (1 query)."""
    with connection.cursor() as cur:
        cur.execute("SELECT upstream_id, id FROM marketdata_coin WHERE upstream_id = ANY(%s)", [upstream_ids])
        return dict(cur.fetchall())


def coin_refs_many(upstream_ids: list[str]) -> dict[str, tuple[int, str, str]]:
    """upstream id → (id, symbol, name) of the known ones among ``upstream_ids``, through the same
    per-process memo as :func:`coin_ref`: 0 queries when all are known to this process, else 1."""
    out = {u: ref for u in upstream_ids if (ref := _coin_memo.get(u)) is not None}
    rest = [u for u in upstream_ids if u not in out]
    if not rest:
        return out
    with connection.cursor() as cur:
        cur.execute(
            "SELECT upstream_id, id, symbol, name FROM marketdata_coin WHERE upstream_id = ANY(%s)", [rest]
        )
        rows = cur.fetchall()
    with _coin_memo_lock:
        if len(_coin_memo) > 100_000:
            _coin_memo.clear()
        for upstream_id, pk, symbol, name in rows:
            _coin_memo[upstream_id] = out[upstream_id] = (pk, symbol, name)
    return out


def coins_count() -> int:
    """How many coins are stored, active or not (1 query)."""
    return Coin.objects.count()


def coin_ids_active(*, coin_ids: list[int] | None = None) -> list[int]:
    """Ids of the active coins (of ``coin_ids`` if given) (1 query)."""
    qs = Coin.objects.filter(active=True)
    if coin_ids is not None:
        qs = qs.filter(pk__in=coin_ids)
    return list(qs.values_list("pk", flat=True))


def _after_sql(keys: list[tuple[str, bool]], values: list[Any]) -> tuple[str, list[Any]]:
    """SQL true for rows strictly after ``values`` in ``ORDER BY k1 [DESC] NULLS LAST, …`` over
    ``keys`` [(sql expression, descending)]: the keyset condition of a cursor page."""
    ors: list[str] = []
    args: list[Any] = []
    for i, (expr, descending) in enumerate(keys):
        same = [f"{e} IS NOT DISTINCT FROM %s" for e, _ in keys[:i]]
        same_args = list(values[:i])
        value = values[i]
        if value is None:  # nulls sort last: only a later tiebreaker among nulls comes after
            continue
        after = f"({expr} {'<' if descending else '>'} %s OR {expr} IS NULL)"
        ors.append("(" + " AND ".join([*same, after]) + ")")
        args += [*same_args, value]
    return ("(" + " OR ".join(ors) + ")" if ors else "false"), args


#: Sort key of a ranked coin search: exact symbol or id matches first, then market cap, then id.
COIN_SEARCH_KEY = ("tier", "market_cap", "id")


def coins_page(
    *,
    q: str | None,
    symbol: str | None,
    active: bool | None,
    after: list[Any] | None,
    offset: int,
    limit: int,
) -> list[tuple]:
    """Coins (1 query): (id, symbol, name, active, first_seen, last_seen, match tier, market cap).

    Without ``q``/``symbol``: ordered by upstream id (``after`` = [id]). With them: ranked — exact
    symbol or id matches first (tier 0; other matches of ``q``: tier 1), then by the latest market
    cap (largest first, none last), then id (``after`` = [tier, market cap, id]). ``q`` matches id or
    name (substring, case-insensitive) or symbol (exact); ``symbol`` is an exact, case-insensitive
    symbol match.
    """
    args: list[Any] = []
    ranked = q is not None or symbol is not None
    if q is not None:
        tier = "CASE WHEN lower(c.symbol) = lower(%s) OR c.upstream_id = lower(%s) THEN 0 ELSE 1 END"
        args += [q, q]
    else:
        tier = "0"
    sql = (
        f"SELECT * FROM (SELECT c.upstream_id, c.symbol, c.name, c.active, c.first_seen, c.last_seen, "  # noqa: S608
        f"{tier} AS tier, s.market_cap FROM marketdata_coin c "
        "LEFT JOIN marketdata_marketsnapshot s ON s.coin_id = c.id WHERE true"
    )
    if q is not None:
        sql += " AND (c.upstream_id ILIKE %s OR lower(c.symbol) = lower(%s) OR c.name ILIKE %s)"
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [like, q, like]
    if symbol is not None:
        sql += " AND lower(c.symbol) = lower(%s)"
        args.append(symbol)
    if active is not None:
        sql += " AND c.active = %s"
        args.append(active)
    sql += ") x WHERE true"
    keys = (
        [("tier", False), ("market_cap", True), ("upstream_id", False)]
        if ranked
        else [("upstream_id", False)]
    )
    if after is not None:
        cond, cond_args = _after_sql(keys, after)
        sql += f" AND {cond}"
        args += cond_args
    order = ", ".join(f"{e} {'DESC' if d else 'ASC'} NULLS LAST" for e, d in keys)
    sql += f" ORDER BY {order} OFFSET %s LIMIT %s"
    args += [offset, limit]
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


#: The snapshot's detail columns, in the order the selectors below return them after the others.
SNAPSHOT_DETAIL_FIELDS = (
    "change_1h_pct",
    "change_7d_pct",
    "change_30d_pct",
    "circulating_supply",
    "total_supply",
    "max_supply",
    "fully_diluted_valuation",
    "ath",
    "ath_date",
    "atl",
    "atl_date",
    "image_url",
)
_DETAIL_COLUMNS = ", ".join(f"s.{f}" for f in SNAPSHOT_DETAIL_FIELDS)


def coin_detail(upstream_id: str) -> tuple | None:
    """Coin + its snapshot columns (1 query): upstream_id, symbol, name, active, first_seen, last_seen,
    then price … last_updated, fetched_at, then ``SNAPSHOT_DETAIL_FIELDS`` (None when there is no
    snapshot)."""
    sql = (
        "SELECT c.upstream_id, c.symbol, c.name, c.active, c.first_seen, c.last_seen, s.price, "  # noqa: S608
        "s.market_cap, s.rank, s.volume_24h, s.high_24h, s.low_24h, s.change_24h_pct, s.last_updated, "
        f"s.fetched_at, {_DETAIL_COLUMNS} FROM marketdata_coin c "
        "LEFT JOIN marketdata_marketsnapshot s ON s.coin_id = c.id WHERE c.upstream_id = %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [upstream_id])
        return cur.fetchone()


# --- snapshots -------------------------------------------------------------------------------------
_SNAPSHOT_COLUMNS = (
    "c.upstream_id, c.symbol, c.name, s.price, s.market_cap, s.rank, s.volume_24h, s.high_24h, "
    f"s.low_24h, s.change_24h_pct, s.last_updated, {_DETAIL_COLUMNS}"
)

MARKET_ORDER = {
    "market_cap": "s.market_cap",
    "volume": "s.volume_24h",
    "change": "s.change_24h_pct",
    "price": "s.price",
    "rank": "s.rank",
}


def markets_page(
    *,
    ids: list[str] | None,
    order_by: str,
    descending: bool,
    after: list[Any] | None,
    offset: int,
    limit: int,
) -> list[tuple]:
    """Latest snapshots joined with their coins (1 query), in ``_SNAPSHOT_COLUMNS`` order (the
    ``SNAPSHOT_DETAIL_FIELDS`` last), sorted by
    ``order_by`` (nulls last) then upstream id; ``after`` = [sort value, upstream id] of the last row
    of the previous page (keyset paging), ``offset`` rows skipped after that."""
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
    if after is not None:
        cond, cond_args = _after_sql([(column, descending), ("c.upstream_id", False)], after)
        sql += f" AND {cond}"
        args += cond_args
    sql += f" ORDER BY {column} {direction} NULLS LAST, c.upstream_id OFFSET %s LIMIT %s"
    args += [offset, limit]
    with connection.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _iso_sql(column: str) -> str:
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
        f"'change_24h_pct', s.change_24h_pct, 'last_updated', {_iso_sql('s.last_updated')}) "
        "ORDER BY c.upstream_id), '{}')::text, COALESCE(array_agg(c.upstream_id), '{}') "
        "FROM marketdata_coin c JOIN marketdata_marketsnapshot s ON s.coin_id = c.id "
        "WHERE c.upstream_id = ANY(%s)"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [ids])
        text, found = cur.fetchone()
    return text, list(found)


def prices_rows(ids: list[str]) -> list[tuple]:
    """The snapshots of the known ids that have one, as :func:`markets_page` rows (1 query)."""
    sql = (
        f"SELECT {_SNAPSHOT_COLUMNS} FROM marketdata_marketsnapshot s "  # noqa: S608
        "JOIN marketdata_coin c ON c.id = s.coin_id WHERE c.upstream_id = ANY(%s) ORDER BY c.upstream_id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [ids])
        return cur.fetchall()


#: The changes (%) of a quote coin's own price, as the snapshot columns name them.
QUOTE_COINS = {"btc": "bitcoin", "eth": "ethereum"}


def quote_inputs(code: str) -> tuple[float, dict[str, float | None]] | None:
    """What converting USD values into ``code`` needs (1 query): for btc/eth, (1 / the coin's USD
    price, its own 1h/24h/7d/30d changes in %) from our snapshot; otherwise (the stored rate per
    USD, {}). None when that is not stored (yet)."""
    with connection.cursor() as cur:
        if code in QUOTE_COINS:
            cur.execute(
                "SELECT s.price, s.change_1h_pct, s.change_24h_pct, s.change_7d_pct, s.change_30d_pct "
                "FROM marketdata_marketsnapshot s JOIN marketdata_coin c ON c.id = s.coin_id "
                "WHERE c.upstream_id = %s",
                [QUOTE_COINS[code]],
            )
            row = cur.fetchone()
            if row is None or not row[0]:
                return None
            return 1.0 / row[0], dict(zip(("1h", "24h", "7d", "30d"), row[1:], strict=True))
        cur.execute("SELECT per_usd FROM marketdata_exchangerate WHERE code = %s", [code])
        rate = cur.fetchone()
        return (rate[0], {}) if rate is not None and rate[0] > 0 else None


def global_latest() -> tuple | None:
    """The newest global snapshot (1 query): time, total market cap, total volume, BTC and ETH
    dominance, active coins, markets, 24h market-cap change, fetched_at."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT time, total_market_cap, total_volume, btc_dominance, eth_dominance, active_coins, "
            "markets, market_cap_change_24h_pct, fetched_at FROM marketdata_globalsnapshot "
            "ORDER BY time DESC LIMIT 1"
        )
        return cur.fetchone()


def global_series(*, start: datetime, end: datetime, bucket_seconds: int, limit: int) -> list[tuple]:
    """The global snapshots of [start, end), the last one of each ``bucket_seconds`` bucket, oldest
    first, at most ``limit`` (1 query): bucket start, time, total market cap, total volume, BTC and
    ETH dominance, active coins."""
    sql = """
        SELECT DISTINCT ON (bucket) bucket, time, total_market_cap, total_volume, btc_dominance,
               eth_dominance, active_coins
        FROM (SELECT to_timestamp(floor(extract(epoch FROM time) / %(b)s) * %(b)s) AS bucket, *
              FROM marketdata_globalsnapshot WHERE time >= %(start)s AND time < %(end)s) x
        ORDER BY bucket, time DESC LIMIT %(limit)s
    """
    with connection.cursor() as cur:
        cur.execute(sql, {"b": bucket_seconds, "start": start, "end": end, "limit": limit})
        return cur.fetchall()


def snapshot_prices(*, coin_ids: list[int]) -> dict[int, tuple[float | None, datetime | None]]:
    """coin id → (price, last_updated) of the latest snapshot of each of ``coin_ids`` that has one
    (1 query): the reference the write path checks new ticks against."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT coin_id, price, last_updated FROM marketdata_marketsnapshot WHERE coin_id = ANY(%s)",
            [coin_ids],
        )
        return {c: (p, t) for c, p, t in cur.fetchall()}


def top_coins(*, limit: int) -> dict[str, int]:
    """upstream id → coin id of the ``limit`` active coins with the largest market cap in their latest
    snapshot, largest first (1 query): the fast path's coins."""
    sql = (
        "SELECT c.upstream_id, c.id FROM marketdata_marketsnapshot s "
        "JOIN marketdata_coin c ON c.id = s.coin_id WHERE c.active AND s.market_cap > 0 "
        "ORDER BY s.market_cap DESC, c.upstream_id LIMIT %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [limit])
        return dict(cur.fetchall())


def snapshot_market_caps() -> dict[int, tuple[str, str, float]]:
    """coin id → (upstream id, symbol, market cap) from the latest snapshots (1 query)."""
    sql = (
        "SELECT s.coin_id, c.upstream_id, c.symbol, s.market_cap FROM marketdata_marketsnapshot s "
        "JOIN marketdata_coin c ON c.id = s.coin_id WHERE s.market_cap IS NOT NULL AND s.market_cap > 0"
    )
    with connection.cursor() as cur:
        cur.execute(sql)
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}


def coins_stale(*, coin_ids: list[int], cutoff: datetime) -> list[tuple[int, datetime | None, datetime]]:
    """Of ``coin_ids``, the coins first seen before ``cutoff`` whose snapshot is missing or was last
    updated upstream before ``cutoff`` (1 query): (id, snapshot last_updated or None, first_seen)."""
    qs = (
        Coin.objects.filter(pk__in=coin_ids, first_seen__lt=cutoff)
        .filter(
            Q(snapshot__isnull=True)
            | Q(snapshot__last_updated__isnull=True)
            | Q(snapshot__last_updated__lt=cutoff)
        )
        .values_list("pk", "snapshot__last_updated", "first_seen")
    )
    return list(qs)


def coin_is_fresh(*, coin_id: int, since: datetime) -> bool:
    """Whether the coin's snapshot was updated upstream at or after ``since`` (1 query)."""
    return Coin.objects.filter(pk=coin_id, snapshot__last_updated__gte=since).exists()


def market_caps_at(at: datetime, timeframe: str = "1h") -> dict[int, tuple[str, str, float]]:
    """coin id → (upstream id, symbol, market cap) at the close of the last ``timeframe`` bucket that
    ended at or before ``at`` (1 query; served by the bucket_start index of the 1h partition)."""
    delta = TIMEFRAME_DELTA[timeframe]
    bucket = BUCKET_ORIGIN + ((at - BUCKET_ORIGIN) // delta) * delta - delta
    sql = (
        "SELECT k.coin_id, c.upstream_id, c.symbol, k.market_cap FROM marketdata_candle k "
        "JOIN marketdata_coin c ON c.id = k.coin_id "
        "WHERE k.timeframe = %s AND k.bucket_start = %s AND k.market_cap IS NOT NULL AND k.market_cap > 0"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [timeframe, bucket])
        return {row[0]: (row[1], row[2], row[3]) for row in cur.fetchall()}


# --- freshness (operators: GET /metrics, doctor) ---------------------------------------------------
# --- candles ---------------------------------------------------------------------------------------
def candles_range(
    *,
    coin_id: int,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 500,
    newest_first: bool = True,
    fields: tuple[str, ...] = CANDLE_FIELDS,
) -> list[tuple]:
    """Candles of one series with ``start <= bucket_start < end``, as tuples of ``fields``.

    Served by one (backward, for newest first) scan of the primary key index
    (coin_id, timeframe, bucket_start) per partition, stopping after ``limit`` rows.
    """
    qs = Candle.objects.filter(coin_id=coin_id, timeframe=timeframe)
    if start is not None:
        qs = qs.filter(bucket_start__gte=start)
    if end is not None:
        qs = qs.filter(bucket_start__lt=end)
    qs = qs.order_by("-bucket_start" if newest_first else "bucket_start")
    return list(qs.values_list(*fields)[:limit])


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
    "'closed', closed, 'filled', filled, 'samples', samples, 'partial', partial)"
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
        "WITH page AS (SELECT bucket_start, open, high, low, close, volume, volume_24h, closed, filled, "  # noqa: S608
        "samples, partial "
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


def candles_multi_page_json(
    *,
    coins: list[tuple[int, str]],
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    after: tuple[int, datetime] | None,
    order: str,
    limit: int,
) -> tuple[bool, bool, tuple[str, datetime] | None, str]:
    """One page of the candles of several coins, rendered as a JSON array by PostgreSQL (1 query).

    ``coins`` are (coin id, upstream id) in the order the rows come: all candles of the first coin
    (in ``order`` of bucket_start), then of the second, … ``after`` = (1-based position in ``coins``,
    bucket_start) of the last row of the previous page. Each row is the single-coin row
    (:func:`candles_page_json`'s ``_CANDLE_JSON``, whatever columns it has) with ``"coin"`` first.
    One backward (or forward) primary-key scan per coin, each stopping after ``limit + 1`` rows, run
    coin after coin until the page is full: a page reads at most ``limit + 1`` candles. The page is
    ordered by the coin's position only, which the nested loop over ``unnest … WITH ORDINALITY``
    already delivers (no sort: the LIMIT stops the loop early); within a coin its rows come in the
    order of the LATERAL scan's ORDER BY, and ``row_number`` numbers them by (position, time) anyway.

    Returns (more rows exist, every row is closed, (upstream id, bucket_start) of the last row,
    JSON array text).
    """
    bounds, args = _bounds_sql(start, end, None, order)
    direction, op, unbounded = ("ASC", ">", "-infinity") if order == "asc" else ("DESC", "<", "infinity")
    after_ord, after_at = after if after is not None else (0, None)
    row = f"'{{\"coin\":' || to_json(w_coin)::text || ',' || substr(({_CANDLE_JSON})::text, 2)"
    sql = (
        "WITH want AS (SELECT w.pk AS w_pk, w.uid AS w_coin, w.ord AS w_ord "  # noqa: S608 - constant pieces
        "FROM unnest(%s::int8[], %s::text[]) WITH ORDINALITY AS w(pk, uid, ord) "
        "WHERE w.ord >= %s ORDER BY w.ord), "
        "page AS (SELECT want.w_coin, want.w_ord, k.* FROM want CROSS JOIN LATERAL ("
        f"SELECT * FROM marketdata_candle WHERE coin_id = want.w_pk AND timeframe = %s{bounds} "
        f"AND bucket_start {op} (CASE WHEN want.w_ord = %s THEN %s::timestamptz "
        f"ELSE '{unbounded}'::timestamptz END) ORDER BY bucket_start {direction} LIMIT %s) k "
        "ORDER BY want.w_ord LIMIT %s), "
        f"numbered AS (SELECT row_number() OVER (ORDER BY w_ord, bucket_start {direction}) AS n, * "
        "FROM page) "
        "SELECT count(*) > %s, COALESCE(bool_and(closed) FILTER (WHERE n <= %s), true), "
        "max(w_coin) FILTER (WHERE n = %s), max(bucket_start) FILTER (WHERE n = %s), "
        f"'[' || COALESCE(string_agg({row}, ',' ORDER BY n) FILTER (WHERE n <= %s), '') || ']' "
        "FROM numbered"
    )
    query_args: list[Any] = [[c for c, _ in coins], [u for _, u in coins], after_ord, timeframe, *args]
    query_args += [after_ord, after_at, limit + 1, limit + 1, limit, limit, limit, limit, limit]
    with connection.cursor() as cur:
        cur.execute(sql, query_args)
        more, closed, last_coin, last_at, text = cur.fetchone()
    last = (last_coin, last_at) if last_coin is not None else None
    return more, closed, last, text


_DAY = timedelta(days=1)
#: Timeframes whose buckets tile a UTC day (a day's close can be read from them), coarsest first.
DAY_TIMEFRAMES: tuple[str, ...] = tuple(
    sorted(
        (
            tf
            for tf, d in TIMEFRAME_DELTA.items()
            if d <= timedelta(days=1) and timedelta(days=1) % d == timedelta(0)
        ),
        key=lambda tf: TIMEFRAME_DELTA[tf],
        reverse=True,
    )
)


def _close_time_sql(bucket: str, width: str, closed: str, updated: str) -> str:
    """SQL: the time a candle's close (and market cap, 24 h volume) holds at — its bucket's end when
    closed; for the open bucket its last write (never after the bucket's end)."""
    return f"(CASE WHEN {closed} THEN {bucket} + {width} ELSE LEAST({bucket} + {width}, {updated}) END)"


def day_close(
    *, coin_id: int, day: datetime
) -> tuple[str, datetime, float, float | None, float | None, bool] | None:
    """The values of one coin at the close of the UTC day starting at ``day`` (1 query): of the last
    candle of each of :data:`DAY_TIMEFRAMES` inside the day, the one whose close holds latest (the
    coarser on a tie: the 1d candle of a finished day). Returns (timeframe, time the values hold at,
    close, market cap, 24 h volume, closed), None when the day has no candle."""
    at = _close_time_sql("k.bucket_start", "t.width", "k.closed", "k.updated_at")
    sql = (
        f"SELECT t.tf, {at} AS at, k.close, k.market_cap, k.volume_24h, k.closed "  # noqa: S608
        "FROM unnest(%s::text[], %s::interval[]) AS t(tf, width) CROSS JOIN LATERAL ("
        "SELECT bucket_start, close, market_cap, volume_24h, closed, updated_at FROM marketdata_candle "
        "WHERE coin_id = %s AND timeframe = t.tf AND bucket_start >= %s AND bucket_start < %s "
        "ORDER BY bucket_start DESC LIMIT 1) k ORDER BY at DESC, t.width DESC LIMIT 1"
    )
    widths = [TIMEFRAME_DELTA[tf] for tf in DAY_TIMEFRAMES]
    query_args: list[Any] = [list(DAY_TIMEFRAMES), widths, coin_id, day, day + timedelta(days=1)]
    with connection.cursor() as cur:
        cur.execute(sql, query_args)
        return cur.fetchone()


def candles_span(
    *, coin_id: int, timeframes: Iterable[str] = DAY_TIMEFRAMES
) -> tuple[datetime | None, datetime | None]:
    """(first, last) bucket_start of one coin's candles in any of ``timeframes`` (None, None without
    any) (1 query: two primary-key probes per timeframe)."""
    sql = (
        "SELECT min(f.b), max(l.b) FROM unnest(%s::text[]) AS t(tf) "
        "LEFT JOIN LATERAL (SELECT bucket_start AS b FROM marketdata_candle WHERE coin_id = %s "
        "AND timeframe = t.tf ORDER BY bucket_start LIMIT 1) f ON true "
        "LEFT JOIN LATERAL (SELECT bucket_start AS b FROM marketdata_candle WHERE coin_id = %s "
        "AND timeframe = t.tf ORDER BY bucket_start DESC LIMIT 1) l ON true"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [list(timeframes), coin_id, coin_id])
        first, last = cur.fetchone()
    return first, last


def market_chart_json(
    *, coin_id: int, timeframe: str, start: datetime, end: datetime | None, limit: int
) -> tuple[int, bool, str]:
    """Price (close), market cap and 24 h volume of one coin's ``timeframe`` candles whose close holds
    at a time in [start, end] (``end`` None: open), oldest first, at most ``limit``, as a JSON array
    of {time, price, market_cap, volume_24h} rendered by PostgreSQL (1 query, one index range scan).
    ``time`` is when the values hold (:func:`_close_time_sql`). Returns (rows, every row closed,
    JSON array text)."""
    width = TIMEFRAME_DELTA[timeframe]
    # a constant of TIMEFRAME_DELTA, not input
    at = _close_time_sql(
        "bucket_start", f"interval '{width.total_seconds():.0f} seconds'", "closed", "updated_at"
    )
    upper = ""
    args: list[Any] = [coin_id, timeframe, start - width, start]
    if end is not None:
        upper = f" AND bucket_start < %s AND {at} <= %s"
        args += [end, end]
    sql = (
        f"SELECT count(*), COALESCE(bool_and(closed), true), COALESCE(json_agg(json_build_object("  # noqa: S608
        f"'time', {_iso_sql('at')}, 'price', close, 'market_cap', market_cap, 'volume_24h', volume_24h) "
        "ORDER BY bucket_start), '[]')::text "
        f"FROM (SELECT bucket_start, close, market_cap, volume_24h, closed, {at} AS at "
        "FROM marketdata_candle "
        f"WHERE coin_id = %s AND timeframe = %s AND bucket_start >= %s AND {at} >= %s{upper} "
        "ORDER BY bucket_start LIMIT %s) p"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [*args, limit])
        count, closed, text = cur.fetchone()
    return count, closed, text


_SERIES_COLUMNS = (
    "SELECT (extract(epoch FROM bucket_start) * 1000000)::int8 AS t, open, high, low, close, closed "
    "FROM marketdata_candle WHERE coin_id = %s AND timeframe = %s"
)


def series_window(
    *,
    coin_id: int,
    timeframe: str,
    end: datetime | None = None,
    lower: datetime | None = None,
    lower_inclusive: bool = True,
    order: str = "desc",
    count: int,
    warmup: int,
) -> dict[str, np.ndarray]:
    """The candles one page of an indicator needs, oldest first, as arrays: 1 query.

    The page: up to ``count`` candles with ``bucket_start < end`` and ``bucket_start >= lower``
    (``> lower`` when not ``lower_inclusive``) — the newest of them for ``order="desc"``, the oldest
    for ``"asc"`` — and at least ``warmup`` candles before the page's first one (all there are when
    the series starts later), so that an indicator computed over the arrays has its warm-up
    (``marketdata.indicators.warmup``). ``desc`` reads the newest ``count + warmup`` candles before
    ``end``: those older than ``lower`` are simply more warm-up.

    ``time`` is int64 epoch microseconds; ``closed`` bool; ``open``/``high``/``low``/``close`` float64.
    """
    args: list = [coin_id, timeframe]
    upper = ""
    if end is not None:
        upper = " AND bucket_start < %s"
    if order == "desc" or lower is None:
        sql = _SERIES_COLUMNS + upper
        args += [end] if end is not None else []
        if order == "desc":
            sql = f"SELECT * FROM ({sql} ORDER BY bucket_start DESC LIMIT %s) page ORDER BY t"  # noqa: S608 - constant pieces
            args.append(count + warmup)
        else:
            sql += " ORDER BY bucket_start LIMIT %s"
            args.append(count)
    else:
        before, after = ("<", ">=") if lower_inclusive else ("<=", ">")
        # constant pieces (the operators are chosen above); every value is a parameter
        warm_part = (
            f"{_SERIES_COLUMNS} AND bucket_start {before} %s{upper} ORDER BY bucket_start DESC LIMIT %s"
        )
        page_part = f"{_SERIES_COLUMNS} AND bucket_start {after} %s{upper} ORDER BY bucket_start LIMIT %s"
        sql = f"SELECT * FROM (({warm_part}) UNION ALL ({page_part})) page ORDER BY t"  # noqa: S608
        args += [lower, *([end] if end is not None else []), warmup]
        args += [coin_id, timeframe, lower, *([end] if end is not None else []), count]
    with connection.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    if not rows:
        empty = np.empty(0)
        return {
            "time": np.empty(0, dtype=np.int64),
            "open": empty,
            "high": empty,
            "low": empty,
            "close": empty,
            "closed": np.empty(0, dtype=bool),
        }
    time, opn, high, low, close, closed = zip(*rows, strict=True)
    return {
        "time": np.fromiter(time, dtype=np.int64, count=len(rows)),
        "open": np.fromiter(opn, dtype=np.float64, count=len(rows)),
        "high": np.fromiter(high, dtype=np.float64, count=len(rows)),
        "low": np.fromiter(low, dtype=np.float64, count=len(rows)),
        "close": np.fromiter(close, dtype=np.float64, count=len(rows)),
        "closed": np.fromiter(closed, dtype=bool, count=len(rows)),
    }


def candles_count(*, coin_id: int, timeframe: str, start: datetime, end: datetime) -> int:
    """How many candles one series has with ``start <= bucket_start < end`` (1 query)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM marketdata_candle WHERE coin_id = %s AND timeframe = %s "
            "AND bucket_start >= %s AND bucket_start < %s",
            [coin_id, timeframe, start, end],
        )
        return cur.fetchone()[0]


_GAPS_SQL = """
WITH anchor AS (
    SELECT DISTINCT ON (coin_id) coin_id, bucket_start
    FROM marketdata_candle
    WHERE timeframe = %(tf)s AND coin_id = ANY(%(coins)s)
      AND bucket_start < %(w_start)s AND bucket_start >= %(anchor_from)s
    ORDER BY coin_id, bucket_start DESC
), s AS (
    SELECT coin_id, bucket_start FROM anchor
    UNION ALL
    SELECT coin_id, bucket_start FROM marketdata_candle
    WHERE timeframe = %(tf)s AND coin_id = ANY(%(coins)s)
      AND bucket_start >= %(w_start)s AND bucket_start < %(w_end)s
), n AS (
    SELECT coin_id, bucket_start, lead(bucket_start) OVER (PARTITION BY coin_id ORDER BY bucket_start) AS nxt
    FROM s
)
SELECT coin_id, bucket_start + %(iv)s AS gap_start, COALESCE(nxt, %(w_end)s) AS gap_end
FROM n
WHERE COALESCE(nxt, %(w_end)s) > bucket_start + %(iv)s
ORDER BY coin_id, gap_start
"""


def candle_gaps(
    *, coin_ids: list[int], timeframe: str, start: datetime, end: datetime, anchor_from: datetime
) -> list[tuple[int, datetime, datetime]]:
    """Missing buckets of ``timeframe`` in [start, end) as (coin id, gap start, gap end), ordered
    (1 query): between stored buckets, after the last one, and before the first one when an older
    bucket exists at or after ``anchor_from`` (a series' true start is no gap)."""
    # psycopg adapts timedelta; django-stubs' cursor parameter type does not list it
    query_params: dict[str, Any] = {
        "tf": timeframe,
        "coins": coin_ids,
        "w_start": start,
        "w_end": end,
        "anchor_from": anchor_from,
        "iv": TIMEFRAME_DELTA[timeframe],
    }
    with connection.cursor() as cur:
        cur.execute(
            _GAPS_SQL,
            query_params,
        )
        return cur.fetchall()


# --- coverage (GET /v1/coins/{id}/coverage, coin detail) -------------------------------------------
#: Gaps are searched among the newest this-many buckets of each series (1m: ~7 days, 5m: ~35 days,
#: 15m: ~104 days, 1h: ~14 months, 4h and longer: years): bounds the cost of a coverage read. The
#: count stays exact (an index-only count of the older part).
COVERAGE_SCAN_BUCKETS = 10_000
#: At most this many gaps are listed per timeframe (the newest); ``gaps_total`` counts them all.
COVERAGE_MAX_GAPS = 50

# One block per timeframe, joined by UNION ALL into one statement. Each block names its timeframe as a
# bound parameter (psycopg binds server-side: the plan sees the value), so PostgreSQL prunes to that
# timeframe's partitions when planning (a timeframe taken from a list inside the query would plan
# every partition of every timeframe: ~0.7 s of planning measured). Per block, one pass: the newest
# %(scan)s buckets (one backward index-only scan, already in window order: no sort) with the next
# newer bucket beside each (lag) give count, first, last and the gaps; one more primary-key probe
# reads whether the oldest candle is partial.
_COVERAGE_BLOCK = """
SELECT %(tf{i})s::text AS tf,
       (SELECT partial FROM marketdata_candle
        WHERE coin_id = %(coin)s AND timeframe = %(tf{i})s ORDER BY bucket_start LIMIT 1) AS first_partial,
       count(*) AS scanned,
       min(bucket_start) AS scanned_from,
       max(bucket_start) AS last,
       count(*) FILTER (WHERE nxt > bucket_start + %(iv{i})s::interval) AS gaps_total,
       COALESCE(sum(round(extract(epoch FROM nxt - bucket_start)
                          / extract(epoch FROM %(iv{i})s::interval)) - 1)
                FILTER (WHERE nxt > bucket_start + %(iv{i})s::interval), 0)::int8 AS missing,
       COALESCE((array_agg(bucket_start + %(iv{i})s::interval ORDER BY bucket_start DESC)
                 FILTER (WHERE nxt > bucket_start + %(iv{i})s::interval))[1:%(max_gaps)s],
                '{{}}') AS gap_starts,
       COALESCE((array_agg(nxt ORDER BY bucket_start DESC)
                 FILTER (WHERE nxt > bucket_start + %(iv{i})s::interval))[1:%(max_gaps)s], '{{}}') AS gap_ends
FROM (
    SELECT bucket_start, lag(bucket_start) OVER (ORDER BY bucket_start DESC) AS nxt
    FROM (
        SELECT bucket_start FROM marketdata_candle
        WHERE coin_id = %(coin)s AND timeframe = %(tf{i})s
        ORDER BY bucket_start DESC LIMIT %(scan)s
    ) s
) n
"""


@dataclass(frozen=True)
class Coverage:
    """What one series (coin, timeframe) holds. ``gaps``: (start, end) of runs of missing buckets
    between the first and the last candle, newest first, at most ``COVERAGE_MAX_GAPS``;
    ``gaps_total`` and ``missing_buckets`` count all of them found; gaps are searched from
    ``gaps_checked_from`` on (the series' first candle unless it is longer than
    ``COVERAGE_SCAN_BUCKETS``)."""

    timeframe: str
    first: datetime | None
    last: datetime | None
    count: int
    first_partial: bool | None
    gaps: list[tuple[datetime, datetime]]
    gaps_total: int
    missing_buckets: int
    gaps_checked_from: datetime | None


def coverage(
    *, coin_id: int, timeframes: Iterable[str] = TIMEFRAMES, scan: int = COVERAGE_SCAN_BUCKETS
) -> list[Coverage]:
    """Per timeframe: first and last candle time, count, whether the first candle is partial, and the
    gaps (missing buckets between first and last; a ``filled`` candle is no gap) — 1 query, plus 1
    count per series longer than ``scan`` buckets. Cost per series: one primary-key probe and one
    backward index-only scan of at most ``scan`` entries, in one pass (no sort)."""
    tfs = list(timeframes)
    params: dict[str, Any] = {"coin": coin_id, "scan": scan, "max_gaps": COVERAGE_MAX_GAPS}
    for i, tf in enumerate(tfs):
        params[f"tf{i}"] = tf
        params[f"iv{i}"] = TIMEFRAME_DELTA[tf]
    sql = " UNION ALL ".join(f"({_COVERAGE_BLOCK.format(i=i)})" for i in range(len(tfs)))
    out: list[Coverage] = []
    with connection.cursor() as cur:
        cur.execute(sql, params)
        rows = sorted(cur.fetchall(), key=lambda r: tfs.index(r[0]))
        for tf, first_partial, scanned, scanned_from, last, gaps_total, missing, starts, ends in rows:
            count, first = scanned, scanned_from
            if scanned >= scan:  # longer than the scan: count the rest (forward index-only count)
                cur.execute(
                    "SELECT count(*), min(bucket_start) FROM marketdata_candle "
                    "WHERE coin_id = %s AND timeframe = %s AND bucket_start < %s",
                    [coin_id, tf, scanned_from],
                )
                older, oldest = cur.fetchone()
                count += older
                first = oldest or first
            out.append(
                Coverage(
                    timeframe=tf,
                    first=first,
                    last=last,
                    count=count,
                    first_partial=first_partial,
                    gaps=list(zip(starts, ends, strict=True)),
                    gaps_total=gaps_total,
                    missing_buckets=missing,
                    gaps_checked_from=scanned_from,
                )
            )
    return out


def rankings_earliest(timeframe: str = "1h") -> datetime | None:
    """The earliest time a past ranking exists for: the end of the first ``timeframe`` bucket of any
    coin with a market cap (1 query; the ``bucket_start`` index of the 1h/1d partitions)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT min(bucket_start) FROM marketdata_candle WHERE timeframe = %s "
            "AND market_cap IS NOT NULL AND market_cap > 0",
            [timeframe],
        )
        first = cur.fetchone()[0]
    return first + TIMEFRAME_DELTA[timeframe] if first is not None else None


# All in SQL (window functions and two median aggregates), so only flagged buckets leave the database.
# Per series: r = log-close returns; sigma = 1.4826 * median(|r - median(r)|), floored; per bucket:
# ref = median of the log closes of the (up to) two buckets on each side; deviation = the largest
# |log(x) - ref| over open/high/low/close. Flagged: deviation > greatest(z * sigma, min_jump).
_JUMPS_SQL = """
WITH s AS (
    SELECT coin_id, bucket_start, ln(open) AS lo, ln(high) AS lh, ln(low) AS ll, ln(close) AS lc,
           lag(ln(close), 2) OVER w AS p2, lag(ln(close), 1) OVER w AS p1,
           lead(ln(close), 1) OVER w AS n1, lead(ln(close), 2) OVER w AS n2,
           ln(close) - lag(ln(close), 1) OVER w AS r
    FROM marketdata_candle
    WHERE timeframe = %(tf)s AND coin_id = ANY(%(coins)s)
      AND bucket_start >= %(w_start)s AND bucket_start <= %(now)s
      AND least(open, high, low, close) > 0
    WINDOW w AS (PARTITION BY coin_id ORDER BY bucket_start)
), med AS (
    SELECT coin_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY r) AS m, count(*) AS n
    FROM s GROUP BY coin_id
), vol AS (
    SELECT s.coin_id,
           greatest(
               1.4826 * percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(s.r - med.m)), %(floor)s
           ) AS sigma
    FROM s JOIN med USING (coin_id)
    WHERE med.n >= %(min_points)s
    GROUP BY s.coin_id
), d AS (
    SELECT s.coin_id, s.bucket_start, vol.sigma,
           (CASE num_nonnulls(p2, p1, n1, n2)
                WHEN 4 THEN (p2 + p1 + n1 + n2 - greatest(p2, p1, n1, n2) - least(p2, p1, n1, n2)) / 2
                WHEN 3 THEN coalesce(p2, 0) + coalesce(p1, 0) + coalesce(n1, 0) + coalesce(n2, 0)
                            - greatest(p2, p1, n1, n2) - least(p2, p1, n1, n2)
                WHEN 2 THEN (coalesce(p2, 0) + coalesce(p1, 0) + coalesce(n1, 0) + coalesce(n2, 0)) / 2
                ELSE coalesce(p2, p1, n1, n2)
            END) AS ref,
           s.lo, s.lh, s.ll, s.lc
    FROM s JOIN vol USING (coin_id)
)
SELECT coin_id, bucket_start, dev, sigma
FROM (
    SELECT coin_id, bucket_start, sigma,
           greatest(abs(lo - ref), abs(lh - ref), abs(ll - ref), abs(lc - ref)) AS dev
    FROM d WHERE ref IS NOT NULL
) x
WHERE dev > greatest(%(z)s * sigma, %(min_jump)s)
ORDER BY coin_id, bucket_start
"""

JUMP_CHUNK_COINS = 2000  # coins per query of the jump search (bounds the sort memory)


def candle_jumps(
    *,
    coin_ids: list[int],
    timeframe: str,
    start: datetime,
    end: datetime,
    z: float,
    min_jump: float,
    min_points: int,
    sigma_floor: float,
) -> list[tuple[int, datetime, float, float]]:
    """Buckets in [start, end] whose open/high/low/close lies implausibly far from the neighbours'
    closes, as (coin id, bucket_start, log deviation, sigma), ordered (1 query per 2,000 coins).

    Per series: sigma = max(1.4826 * MAD of the log-close returns, ``sigma_floor``), only for series
    with at least ``min_points`` buckets; ref = median log close of the (up to) two buckets on each
    side; flagged when the largest |log(x) - ref| exceeds max(``z`` * sigma, ``min_jump``).
    """
    params: dict[str, Any] = {
        "tf": timeframe,
        "w_start": start,
        "now": end,
        "floor": sigma_floor,
        "min_points": min_points,
        "z": z,
        "min_jump": min_jump,
    }
    rows: list[tuple] = []
    with connection.cursor() as cur:
        for i in range(0, len(coin_ids), JUMP_CHUNK_COINS):
            cur.execute(_JUMPS_SQL, {**params, "coins": coin_ids[i : i + JUMP_CHUNK_COINS]})
            rows += cur.fetchall()
    return rows


def watermark_until(*, coin_id: int, timeframe: str, source: str) -> datetime | None:
    """Everything of this series before the returned time was fetched from ``source`` (None: nothing
    yet) (1 query)."""
    return (
        SeriesWatermark.objects.filter(coin_id=coin_id, timeframe=timeframe, source=source)
        .values_list("until", flat=True)
        .first()
    )


# --- screener --------------------------------------------------------------------------------------
_SCREENER_OPS = {"lt": "<", "gt": ">", "lte": "<=", "gte": ">="}


def screener_page(
    *,
    timeframe: str,
    filters: list[tuple[str, str, float]],
    sort: str,
    after: list[Any] | None,
    offset: int,
    limit: int,
) -> list[tuple]:
    """Rows of the latest-indicator table matching ``filters`` [(field, 'lt'|'gt'|'lte'|'gte', value)]
    (1 query): (upstream id, symbol, name, time, *screener.FIELDS), sorted by ``sort`` (``-`` =
    descending; nulls last) then upstream id; ``after`` = [sort value, upstream id] of the last row of
    the previous page (keyset paging), ``offset`` rows skipped after that."""
    where: list[str] = ["li.timeframe = %s", "c.active"]
    args: list[Any] = [timeframe]
    for field, op, value in filters:
        if field not in SCREENER_FIELDS:
            raise ValueError(field)
        where.append(f"li.{field} {_SCREENER_OPS[op]} %s")
        args.append(value)
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    if field not in SCREENER_FIELDS:
        raise ValueError(sort)
    if after is not None:
        cond, cond_args = _after_sql([(f"li.{field}", descending), ("c.upstream_id", False)], after)
        where.append(cond)
        args += cond_args
    direction = "DESC" if descending else "ASC"
    columns = ", ".join("li." + f for f in SCREENER_FIELDS)
    sql = (
        f"SELECT c.upstream_id, c.symbol, c.name, li.time, {columns} "  # noqa: S608
        "FROM marketdata_latestindicator li JOIN marketdata_coin c ON c.id = li.coin_id "
        f"WHERE {' AND '.join(where)} ORDER BY li.{field} {direction} NULLS LAST, c.upstream_id "
        "OFFSET %s LIMIT %s"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [*args, offset, limit])
        return cur.fetchall()


# --- ingestion lag (operators: manage.py doctor, /metrics) ------------------------------------------
#: A coin is "behind" in a timeframe when its newest closed bucket ended more than this many buckets ago.
LAG_BEHIND_BUCKETS = 2

#: How far back (in buckets) the lag query looks first: the newest closed candle of a healthy pipeline is
#: one or two buckets old, and bounding ``bucket_start`` lets PostgreSQL skip all older partitions.
LAG_WINDOW_BUCKETS = 60

# Per active coin, its newest closed candle at or after %(window)s: one backward scan of the primary key
# (coin_id, timeframe, bucket_start) per coin, in the partitions the window reaches only. The polled
# universe is the active coins with a market snapshot (the coins the ingestion ticks fetch).
_LAG_SQL = """
SELECT max(n.bucket_start),
       count(s.coin_id),
       count(s.coin_id) FILTER (WHERE n.bucket_start IS NULL OR n.bucket_start < %(since)s)
FROM marketdata_coin c
LEFT JOIN marketdata_marketsnapshot s ON s.coin_id = c.id
LEFT JOIN LATERAL (
    SELECT k.bucket_start FROM marketdata_candle k
    WHERE k.coin_id = c.id AND k.timeframe = %(tf)s AND k.closed AND k.bucket_start >= %(window)s
    ORDER BY k.bucket_start DESC LIMIT 1
) n ON true
WHERE c.active
"""


class CandleLag(NamedTuple):
    """Ingestion freshness of one timeframe."""

    timeframe: str
    newest_end: datetime | None  # end of the newest closed candle of any active coin
    lag: timedelta | None  # now - newest_end, never negative (None: no closed candle at all)
    coins_behind: int  # coins of the universe without a closed candle ending in the last behind_buckets
    coins: int  # the polled universe: active coins with a market snapshot


def candles_lag(
    *, now: datetime, behind_buckets: int = LAG_BEHIND_BUCKETS, timeframes: Iterable[str] | None = None
) -> list[CandleLag]:
    """Ingestion freshness per timeframe (of ``timeframes``, all by default), the one reading behind
    /metrics, ``manage.py doctor`` and the admin overview. 1 query per timeframe, 2 when its newest
    closed candle is older than ``LAG_WINDOW_BUCKETS`` buckets: ``now`` minus the end of the newest
    closed candle of the active coins (None when there is none), the polled universe's size and how
    many of its coins have no closed candle ending in the last ``behind_buckets`` buckets (none at
    all counts as behind)."""
    out = []
    with connection.cursor() as cur:
        for tf in timeframes if timeframes is not None else TIMEFRAME_DELTA:
            delta = TIMEFRAME_DELTA[tf]
            # a closed candle ending at or after now - N buckets starts at or after now - (N + 1) buckets
            since = now - delta * (behind_buckets + 1)
            window = min(now - delta * LAG_WINDOW_BUCKETS, since)
            params: dict[str, Any] = {"tf": tf, "since": since, "window": window}
            cur.execute(_LAG_SQL, params)
            newest, coins, behind = cur.fetchone()
            if newest is None:  # stalled for longer than the window (or never ran): look at everything
                cur.execute(_LAG_SQL, {**params, "window": datetime.min.replace(tzinfo=UTC)})
                newest = cur.fetchone()[0]
            newest_end = newest + delta if newest is not None else None
            lag = max(now - newest_end, timedelta(0)) if newest_end is not None else None
            out.append(CandleLag(tf, newest_end, lag, int(behind), int(coins)))
    return out


# --- history (newest-first fills: ingestion.history) --------------------------------------------------
class SeriesMark(NamedTuple):
    since: datetime | None
    until: datetime
    start_reached: bool


def coins_by_rank(
    *, limit: int | None = None, upstream_ids: list[str] | None = None
) -> list[tuple[int, str, int | None]]:
    """Active coins as (coin id, upstream id, market-cap rank or None), by rank (unranked last, then
    by id), the first ``limit`` (of ``upstream_ids`` if given) (1 query)."""
    qs = Coin.objects.filter(active=True)
    if upstream_ids is not None:
        qs = qs.filter(upstream_id__in=upstream_ids)
    rows = qs.order_by(F("snapshot__rank").asc(nulls_last=True), "pk").values_list(
        "pk", "upstream_id", "snapshot__rank"
    )
    return list(rows[:limit] if limit is not None else rows)


def series_marks(*, source: str, coin_ids: list[int]) -> dict[tuple[int, str], SeriesMark]:
    """(coin id, timeframe) → the watermark of ``source`` of those coins (1 query)."""
    rows = SeriesWatermark.objects.filter(source=source, coin_id__in=coin_ids).values_list(
        "coin_id", "timeframe", "since", "until", "start_reached"
    )
    return {(c, tf): SeriesMark(since, until, reached) for c, tf, since, until, reached in rows}


class HistoryProgress(NamedTuple):
    timeframe: str
    coins: int  # active coins
    started: int  # series with a watermark
    complete: int  # series filled back to the target (or to their first data)
    remaining_buckets: int  # at most this many buckets left to fetch (not started: from now)
    remaining_chunks: int  # at most this many range requests left (each of at most ``chunk``)


_HISTORY_PROGRESS_SQL = """
WITH s AS (
    SELECT w.coin_id IS NOT NULL AS started,
           w.coin_id IS NOT NULL AND (w.start_reached OR w.since <= %(target)s) AS complete,
           greatest(0, extract(epoch FROM CASE WHEN w.coin_id IS NULL THEN %(now)s - %(target)s
                                              ELSE w.since - %(target)s END)) AS left_s
    FROM marketdata_coin c
    LEFT JOIN marketdata_serieswatermark w
      ON w.coin_id = c.id AND w.timeframe = %(tf)s AND w.source = %(source)s AND w.since IS NOT NULL
    WHERE c.active
)
SELECT count(*), count(*) FILTER (WHERE started), count(*) FILTER (WHERE complete),
       coalesce(sum(ceil(left_s / %(step)s)) FILTER (WHERE NOT complete), 0),
       coalesce(sum(ceil(left_s / %(chunk)s)) FILTER (WHERE NOT complete), 0)
FROM s
"""


def history_progress(
    *, source: str, timeframe: str, target: datetime, now: datetime, chunk: timedelta
) -> HistoryProgress:
    """How far the newest-first fill of ``timeframe`` from ``source`` is over the active coins,
    with ``target`` the oldest time wanted (1 query). Remaining counts are upper bounds: a coin's
    first data is unknown until its fill reaches it."""
    params: dict[str, Any] = {
        "tf": timeframe,
        "source": source,
        "target": target,
        "now": now,
        "step": TIMEFRAME_DELTA[timeframe].total_seconds(),
        "chunk": chunk.total_seconds(),
    }
    with connection.cursor() as cur:
        cur.execute(_HISTORY_PROGRESS_SQL, params)
        coins, started, complete, buckets, chunks = cur.fetchone()
    return HistoryProgress(timeframe, coins, started, complete, int(buckets), int(chunks))


# --- the stream's (GET /v1/stream) reads ---------------------------------------------------------
def candles_changed_json(
    *, coin_ids: list[int], timeframe: str, bucket_starts: list[datetime], since: datetime
) -> list[tuple[str, str]]:
    """Candles of ``timeframe`` at ``bucket_starts`` of ``coin_ids`` written at or after ``since``
    (the write path sets ``updated_at`` only when values change), oldest bucket first, as
    (upstream id, JSON object text in the shape of the candle list) — 1 query, primary-key lookups."""
    sql = (
        f"SELECT c.upstream_id, {_CANDLE_JSON}::text FROM marketdata_candle k "  # noqa: S608
        "JOIN marketdata_coin c ON c.id = k.coin_id "
        "WHERE k.coin_id = ANY(%s) AND k.timeframe = %s AND k.bucket_start = ANY(%s) AND k.updated_at >= %s "
        "ORDER BY k.bucket_start, c.upstream_id"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [coin_ids, timeframe, bucket_starts, since])
        return cur.fetchall()


def candles_latest_json(*, upstream_ids: list[str], timeframes: list[str]) -> list[tuple[str, str, str]]:
    """The newest candle of each of ``timeframes`` of each coin (the open one while its bucket runs),
    as (upstream id, timeframe, JSON object text) — 1 query, one backward index probe per series."""
    sql = (
        "SELECT c.upstream_id, t.tf, k.j FROM marketdata_coin c "  # noqa: S608
        "CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS t(tf, n) "
        f"CROSS JOIN LATERAL (SELECT {_CANDLE_JSON}::text AS j FROM marketdata_candle "
        "WHERE coin_id = c.id AND timeframe = t.tf ORDER BY bucket_start DESC LIMIT 1) k "
        "WHERE c.upstream_id = ANY(%s) ORDER BY c.upstream_id, t.n"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [timeframes, upstream_ids])
        return cur.fetchall()
