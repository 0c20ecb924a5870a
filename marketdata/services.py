"""The market data write path. Every write of coins, snapshots, ticks, candles and series watermarks
goes through here (reads: :mod:`marketdata.selectors`).

Candles: one path, :func:`candles_upsert` (and the SQL builders :func:`candles_build_1m` and
:func:`candles_rollup`, which feed the same ``INSERT … ON CONFLICT`` statement from a query instead
of a staging table). Semantics, whatever the source:

- keyed by (coin, timeframe, bucket_start); replaying a batch changes nothing;
- rows whose values did not change are not rewritten (``ON CONFLICT … DO UPDATE … WHERE (…) IS
  DISTINCT FROM (…)``): no dead tuples, ``updated_at`` and ``revision`` stay;
- a batch with the same key twice keeps the last occurrence (one statement cannot touch a row twice);
- invalid rows are counted as rejected (with a reason) and skipped, the rest land;
- after commit, the changed (coin, timeframe) series get their cache version bumped
  (:func:`marketdata.cache.candles_changed`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from apiplatform import telemetry
from marketdata import cache, partitions
from marketdata.models import (
    BUCKET_ORIGIN,
    ROLLUP_SOURCE,
    TIMEFRAME_DELTA,
    TIMEFRAMES,
    ExchangeRate,
    GlobalSnapshot,
    SeriesWatermark,
    rollup_targets,
)

logger = logging.getLogger(__name__)

#: The bucket grid's origin as SQL (``date_bin(step, t, EPOCH)``): Monday 1970-01-05 00:00 UTC, so
#: that 1w buckets start on Mondays; every shorter grid is the same as from the Unix epoch
#: (:data:`marketdata.models.BUCKET_ORIGIN`).
EPOCH = "1970-01-05 00:00:00+00"
#: The known timeframes as an SQL list: ``'1m','5m',…``.
_TF_SQL = ",".join(f"'{tf}'" for tf in TIMEFRAMES)


# --- input records -------------------------------------------------------------------------------
class CandleRow(NamedTuple):
    """One candle to write. ``closed=None`` means: closed iff the bucket's end is not after now."""

    coin_id: int
    timeframe: str
    bucket_start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    volume_24h: float | None = None
    market_cap: float | None = None
    closed: bool | None = None
    filled: bool = False
    samples: int | None = None
    partial: bool = False


CANDLE_COLUMNS: tuple[str, ...] = CandleRow._fields
_COPY_TYPES = ["int8", "text", "timestamptz", *["float8"] * 7, "bool", "bool", "int4", "bool"]


class CoinIn(NamedTuple):
    upstream_id: str
    symbol: str
    name: str


class SnapshotIn(NamedTuple):
    coin_id: int
    price: float | None
    market_cap: float | None
    rank: int | None
    volume_24h: float | None
    high_24h: float | None
    low_24h: float | None
    change_24h_pct: float | None
    last_updated: datetime | None
    fetched_at: datetime
    # details (/coins/markets only; a /simple/price observation leaves them None and unwritten)
    change_1h_pct: float | None = None
    change_7d_pct: float | None = None
    change_30d_pct: float | None = None
    circulating_supply: float | None = None
    total_supply: float | None = None
    max_supply: float | None = None
    fully_diluted_valuation: float | None = None
    ath: float | None = None
    ath_date: datetime | None = None
    atl: float | None = None
    atl_date: datetime | None = None
    image_url: str | None = None


#: Which snapshot columns a write sets on an existing row (see :func:`snapshots_upsert`).
SNAPSHOT_PARTS = ("all", "price", "details")
_SNAPSHOT_TYPES = (
    "bigint", "float8", "float8", "int", "float8", "float8", "float8", "float8", "timestamptz",
    "timestamptz", "float8", "float8", "float8", "float8", "float8", "float8", "float8", "float8",
    "timestamptz", "float8", "timestamptz", "text",
)  # fmt: skip
_PRICE_SET = (
    "price = EXCLUDED.price, market_cap = EXCLUDED.market_cap, volume_24h = EXCLUDED.volume_24h, "
    "change_24h_pct = EXCLUDED.change_24h_pct, last_updated = EXCLUDED.last_updated, "
    "fetched_at = EXCLUDED.fetched_at"
)
_DETAIL_SET = (
    "rank = EXCLUDED.rank, high_24h = EXCLUDED.high_24h, low_24h = EXCLUDED.low_24h, "
    "change_1h_pct = EXCLUDED.change_1h_pct, change_7d_pct = EXCLUDED.change_7d_pct, "
    "change_30d_pct = EXCLUDED.change_30d_pct, circulating_supply = EXCLUDED.circulating_supply, "
    "total_supply = EXCLUDED.total_supply, max_supply = EXCLUDED.max_supply, "
    "fully_diluted_valuation = EXCLUDED.fully_diluted_valuation, ath = EXCLUDED.ath, "
    "ath_date = EXCLUDED.ath_date, atl = EXCLUDED.atl, atl_date = EXCLUDED.atl_date, "
    "image_url = EXCLUDED.image_url, details_updated = EXCLUDED.details_updated"
)
_NEWER = (
    " WHERE s.last_updated IS NULL OR EXCLUDED.last_updated IS NULL"
    " OR EXCLUDED.last_updated >= s.last_updated"
)
_SNAPSHOT_ON_CONFLICT = {
    "all": f"{_PRICE_SET}, {_DETAIL_SET}{_NEWER}",
    # a fresher price between two /coins/markets walks: the 24h range widens to include it
    "price": f"{_PRICE_SET}, high_24h = GREATEST(s.high_24h, EXCLUDED.price), "
    f"low_24h = LEAST(s.low_24h, EXCLUDED.price){_NEWER}",
    # the details of a record whose price we already had (or had newer): the price stays
    "details": _DETAIL_SET,
}


class TickIn(NamedTuple):
    coin_id: int
    time: datetime  # upstream last_updated
    price: float
    market_cap: float | None = None
    volume_24h: float | None = None


@dataclass
class UpsertResult:
    """What one candle write did. ``spans``: per timeframe, (first, last) bucket_start that changed."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    changed_coin_ids: set[int] = field(default_factory=set)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def merge(self, other: UpsertResult) -> UpsertResult:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        for tf, (lo, hi) in other.spans.items():
            old = self.spans.get(tf)
            self.spans[tf] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
        self.changed_coin_ids |= other.changed_coin_ids
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "reasons": dict(self.reasons),
        }


@dataclass
class TickResult:
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    earliest: datetime | None = None  # the oldest newly recorded tick time (where a 1m rebuild starts)
    coin_ids: set[int] = field(default_factory=set)


# --- the shared upsert ---------------------------------------------------------------------------
_INTERVAL_CASE = (
    "CASE {col} WHEN '1m' THEN interval '1 minute' WHEN '5m' THEN interval '5 minutes' "
    "WHEN '15m' THEN interval '15 minutes' WHEN '1h' THEN interval '1 hour' "
    "WHEN '4h' THEN interval '4 hours' WHEN '1d' THEN interval '1 day' WHEN '1w' THEN interval '7 days' END"
)

_UPSERT_SQL = """
WITH src AS {materialized} ({src}),
ins AS (
    INSERT INTO marketdata_candle AS c
        (coin_id, timeframe, bucket_start, open, high, low, close, volume, volume_24h, market_cap,
         closed, filled, samples, partial, source, revision, updated_at)
    SELECT coin_id, timeframe, bucket_start, open, high, low, close, volume, volume_24h, market_cap,
           closed, filled, samples, partial, %(source)s, 0, %(written_at)s
    FROM src
    ON CONFLICT (coin_id, timeframe, bucket_start) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, volume_24h = EXCLUDED.volume_24h, market_cap = EXCLUDED.market_cap,
        closed = EXCLUDED.closed, filled = EXCLUDED.filled, samples = EXCLUDED.samples,
        partial = EXCLUDED.partial, source = EXCLUDED.source,
        revision = c.revision + 1, updated_at = EXCLUDED.updated_at
    WHERE (c.open, c.high, c.low, c.close, c.volume, c.volume_24h, c.market_cap, c.closed, c.filled,
           c.samples, c.partial)
          IS DISTINCT FROM
          (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
           EXCLUDED.volume_24h, EXCLUDED.market_cap, EXCLUDED.closed, EXCLUDED.filled,
           EXCLUDED.samples, EXCLUDED.partial)
    RETURNING c.coin_id, c.timeframe, c.bucket_start, c.revision = 0 AS inserted, c.closed
),
-- closed candles changed: the screener's refresh recomputes what its stored state cannot absorb
logged AS (
    INSERT INTO marketdata_candlechange (timeframe, coin_id, bucket_start)
    SELECT timeframe, coin_id, min(bucket_start) FROM ins WHERE closed GROUP BY timeframe, coin_id
)
SELECT coin_id, timeframe, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
       min(bucket_start), max(bucket_start)
FROM ins GROUP BY coin_id, timeframe
{count_src}
"""
_COUNT_SRC = "UNION ALL SELECT NULL, NULL, (SELECT count(*) FROM src), 0, NULL, NULL"


def _run_upsert(cur, src_sql: str, params: dict, *, source: str, count_src: bool = True) -> UpsertResult:
    """Upsert the rows produced by ``src_sql`` (candle columns, unique keys). One statement.

    ``count_src``: also count the source rows (for ``unchanged``); costs materialising them, so the
    staging path counts only when it has to (see :func:`candles_upsert`)."""
    sql = _UPSERT_SQL.format(
        src=src_sql,
        materialized="MATERIALIZED" if count_src else "NOT MATERIALIZED",
        count_src=_COUNT_SRC if count_src else "",
    )
    cur.execute(sql, {**params, "source": source, "written_at": timezone.now()})
    result = UpsertResult()
    total = 0
    pairs: list[tuple[int, str]] = []
    written_by_tf: dict[str, int] = {}
    for coin_id, tf, ins, upd, lo, hi in cur.fetchall():
        if coin_id is None:
            total = ins
            continue
        result.inserted += ins
        result.updated += upd
        written_by_tf[tf] = written_by_tf.get(tf, 0) + ins + upd
        pairs.append((coin_id, tf))
        result.changed_coin_ids.add(coin_id)
        old = result.spans.get(tf)
        result.spans[tf] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    result.unchanged = total - result.inserted - result.updated if count_src else 0
    if pairs:
        transaction.on_commit(lambda: cache.candles_changed(pairs=pairs))
    if written_by_tf:
        transaction.on_commit(lambda: _count_written(source, written_by_tf))
    return result


def _count_written(source: str, written_by_tf: dict[str, int]) -> None:
    """The shared ``candles_written`` counter (GET /metrics), once the rows are committed."""
    for tf, n in written_by_tf.items():
        telemetry.count("candles_written", n, timeframe=tf, source=source)


def _ensure_partitions(cur, relation: str) -> None:
    cur.execute(
        f"SELECT timeframe, min(bucket_start), max(bucket_start) FROM {relation} "  # noqa: S608
        f"WHERE timeframe IN ({_TF_SQL}) GROUP BY timeframe"
    )
    for tf, lo, hi in cur.fetchall():
        partitions.partitions_ensure(timeframe=tf, start=lo, end=hi)


def _as_tuples(rows: Iterable[Sequence | Mapping]) -> Iterable[tuple]:
    for row in rows:
        if isinstance(row, tuple):
            yield row if len(row) == len(CANDLE_COLUMNS) else CandleRow(*row)
        elif isinstance(row, Mapping):
            yield CandleRow(**{k: row[k] for k in CANDLE_COLUMNS if k in row})
        else:
            yield CandleRow(*row)


_STAGE_DDL = """
CREATE TEMP TABLE _candle_stage (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    coin_id bigint, timeframe text, bucket_start timestamptz,
    open float8, high float8, low float8, close float8,
    volume float8, volume_24h float8, market_cap float8, closed bool, filled bool,
    samples int4, partial bool
) ON COMMIT DROP
"""

# Validity of a staged row, as one boolean expression (fast: evaluated for every row). NaN compares
# greater than every number in PostgreSQL, so "x <= 1e300" also rejects NaN and +Infinity.
_VALID = f"""(
  s.timeframe IN ({_TF_SQL}) AND s.bucket_start IS NOT NULL
  AND s.open >= 0 AND s.open <= 1e300 AND s.high >= 0 AND s.high <= 1e300
  AND s.low >= 0 AND s.low <= 1e300 AND s.close >= 0 AND s.close <= 1e300
  AND s.low <= LEAST(s.open, s.close) AND s.high >= GREATEST(s.open, s.close)
  AND (s.volume IS NULL OR (s.volume >= 0 AND s.volume <= 1e300))
  AND (s.volume_24h IS NULL OR (s.volume_24h >= 0 AND s.volume_24h <= 1e300))
  AND (s.market_cap IS NULL OR (s.market_cap >= 0 AND s.market_cap <= 1e300))
  AND (s.samples IS NULL OR s.samples >= 0)
  AND date_bin({_INTERVAL_CASE.format(col="s.timeframe")}, s.bucket_start, '{EPOCH}') = s.bucket_start
  AND s.coin_id IN (SELECT id FROM marketdata_coin)
)"""  # noqa: S608 - constant SQL

# Why a row is invalid (evaluated only for invalid rows): the first failing rule.
_REJECT_REASON = f"""
CASE
  WHEN s.timeframe IS NULL OR s.timeframe NOT IN ({_TF_SQL}) THEN 'unknown timeframe'
  WHEN s.bucket_start IS NULL THEN 'missing time'
  WHEN date_bin({_INTERVAL_CASE.format(col="s.timeframe")}, s.bucket_start, '{EPOCH}') <> s.bucket_start
       THEN 'time not aligned to timeframe'
  WHEN s.open IS NULL OR s.high IS NULL OR s.low IS NULL OR s.close IS NULL THEN 'missing price'
  WHEN NOT (s.open >= 0 AND s.open <= 1e300 AND s.high >= 0 AND s.high <= 1e300
            AND s.low >= 0 AND s.low <= 1e300 AND s.close >= 0 AND s.close <= 1e300)
       THEN 'price negative or not finite'
  WHEN s.low > LEAST(s.open, s.close) OR s.high < GREATEST(s.open, s.close)
       THEN 'low/high do not bound open/close'
  WHEN NOT (COALESCE(s.volume, 0) >= 0 AND COALESCE(s.volume, 0) <= 1e300)
       THEN 'volume negative or not finite'
  WHEN NOT (COALESCE(s.volume_24h, 0) >= 0 AND COALESCE(s.volume_24h, 0) <= 1e300)
       THEN 'volume_24h negative or not finite'
  WHEN NOT (COALESCE(s.market_cap, 0) >= 0 AND COALESCE(s.market_cap, 0) <= 1e300)
       THEN 'market_cap negative or not finite'
  WHEN s.samples < 0 THEN 'samples negative'
  WHEN s.coin_id IS NULL OR s.coin_id NOT IN (SELECT id FROM marketdata_coin) THEN 'unknown coin'
  ELSE 'invalid'
END
"""  # noqa: S608 - constant SQL


@transaction.atomic
def candles_upsert(
    *, rows: Iterable[CandleRow | Sequence | Mapping], source: str, now: datetime | None = None
) -> UpsertResult:
    """Write candles: COPY into a temporary staging table, validate, dedupe, ``INSERT … ON CONFLICT``.

    ``rows``: :class:`CandleRow` tuples (or tuples in its field order, or mappings with its field
    names). ``closed=None`` → closed iff ``bucket_start + timeframe <= now``. ``source`` is stored on
    every row written (e.g. ``ticks``, ``rollup``, ``ohlc``, ``import``). ``samples`` (default null:
    not built from counted observations) and ``partial`` (default false: a full bucket, as upstream
    OHLC candles are) are optional, so 12-field rows of older callers keep working.
    """
    now = now or timezone.now()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")
        # DROP first: inside an outer transaction (nested atomic) ON COMMIT DROP has not fired yet.
        cur.execute("DROP TABLE IF EXISTS _candle_stage")
        cur.execute(_STAGE_DDL)
        staged = 0
        with cur.cursor.copy(
            "COPY _candle_stage (coin_id, timeframe, bucket_start, open, high, low, close, volume, "
            "volume_24h, market_cap, closed, filled, samples, partial) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_COPY_TYPES)
            for row in _as_tuples(rows):
                copy.write_row(row)
                staged += 1
        if not staged:
            return UpsertResult()
        reasons: dict[str, int] = {}
        cur.execute(f"SELECT count(*) FROM _candle_stage s WHERE {_VALID} IS NOT TRUE")  # noqa: S608
        if cur.fetchone()[0]:
            cur.execute(
                f"WITH bad AS (DELETE FROM _candle_stage s WHERE {_VALID} IS NOT TRUE "  # noqa: S608
                f"RETURNING {_REJECT_REASON} AS reason) SELECT reason, count(*) FROM bad GROUP BY reason"
            )
            reasons = dict(cur.fetchall())
        _ensure_partitions(cur, "_candle_stage")
        interval = _INTERVAL_CASE.format(col="timeframe")
        src = f"""
            SELECT DISTINCT ON (coin_id, timeframe, bucket_start)
                coin_id, timeframe::varchar(3) AS timeframe, bucket_start, open, high, low, close,
                volume, volume_24h, market_cap,
                COALESCE(closed, bucket_start + {interval} <= %(now)s) AS closed,
                COALESCE(filled, false) AS filled, samples, COALESCE(partial, false) AS partial
            FROM _candle_stage
            ORDER BY coin_id, timeframe, bucket_start, seq DESC
        """  # noqa: S608 - constant SQL
        result = _run_upsert(cur, src, {"now": now}, source=source, count_src=False)
        valid = staged - sum(reasons.values())
        distinct = valid
        if result.inserted + result.updated < valid:  # some rows unchanged or duplicated: count keys
            cur.execute(
                "SELECT count(*) FROM (SELECT DISTINCT coin_id, timeframe, bucket_start FROM _candle_stage) k"
            )
            distinct = cur.fetchone()[0]
    result.rejected = sum(reasons.values())
    result.reasons = reasons
    result.unchanged = distinct - result.inserted - result.updated
    result.duplicates = valid - distinct
    if result.rejected:
        logger.warning("candles_upsert(%s): %d rows rejected: %s", source, result.rejected, reasons)
        rejected = result.rejected
        transaction.on_commit(lambda: telemetry.count("candles_rejected", rejected, source=source))
    return result


# --- ticks → 1m candles --------------------------------------------------------------------------
_BUILD_1M_SQL = """
WITH t AS (
    SELECT coin_id, date_bin('1 minute', time, '{epoch}') AS b, time, price, market_cap, volume_24h
    FROM marketdata_tick
    WHERE time >= %(since)s AND time < %(until)s {coin_filter}
),
tm AS (
    SELECT coin_id, b,
           (array_agg(price ORDER BY time))[1] AS open, max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY time DESC))[1] AS close,
           (array_agg(volume_24h ORDER BY time DESC))[1] AS volume_24h,
           (array_agg(market_cap ORDER BY time DESC))[1] AS market_cap,
           count(*)::int4 AS samples
    FROM t GROUP BY coin_id, b
),
polled AS (
    SELECT p.coin_id, p.b FROM unnest(%(pc)s::bigint[], %(pb)s::timestamptz[]) AS p(coin_id, b)
    WHERE p.b >= %(since)s AND p.b < %(until)s
    UNION
    SELECT coin_id, bucket_start FROM marketdata_candle
    WHERE timeframe = '1m' AND filled AND bucket_start >= %(since)s AND bucket_start < %(until)s {coin_filter}
),
keys AS (SELECT coin_id, b FROM tm UNION SELECT coin_id, b FROM polled),
seed AS (
    SELECT k.coin_id, s.close, s.volume_24h, s.market_cap
    FROM (SELECT DISTINCT coin_id FROM keys) k
    CROSS JOIN LATERAL (
        SELECT x.close, x.volume_24h, x.market_cap FROM marketdata_candle x
        WHERE x.coin_id = k.coin_id AND x.timeframe = '1m' AND x.bucket_start < %(since)s
        ORDER BY x.bucket_start DESC LIMIT 1
    ) s
),
seq AS (
    SELECT k.coin_id, k.b, tm.open, tm.high, tm.low, tm.close, tm.volume_24h, tm.market_cap, tm.samples
    FROM keys k LEFT JOIN tm USING (coin_id, b)
    UNION ALL
    SELECT coin_id, %(since)s::timestamptz - interval '1 minute', NULL, NULL, NULL,
           close, volume_24h, market_cap, NULL
    FROM seed
),
g AS (
    SELECT seq.*, count(close) OVER (PARTITION BY coin_id ORDER BY b) AS grp FROM seq
),
f AS (
    SELECT g.*,
           first_value(close) OVER w AS c_close,
           first_value(volume_24h) OVER w AS c_vol,
           first_value(market_cap) OVER w AS c_mcap,
           -- the coin's first observed minute, when no older 1m candle exists (no seed row):
           -- that minute started before our first observation of the coin
           bool_or(b < %(since)s) OVER (PARTITION BY coin_id) AS seeded,
           min(b) FILTER (WHERE close IS NOT NULL) OVER (PARTITION BY coin_id) AS first_b
    FROM g WINDOW w AS (PARTITION BY coin_id, grp ORDER BY b)
)
SELECT coin_id, '1m'::varchar(3) AS timeframe, b AS bucket_start,
       COALESCE(open, c_close) AS open, COALESCE(high, c_close) AS high,
       COALESCE(low, c_close) AS low, COALESCE(close, c_close) AS close,
       NULL::float8 AS volume,
       CASE WHEN close IS NULL THEN c_vol ELSE volume_24h END AS volume_24h,
       CASE WHEN close IS NULL THEN c_mcap ELSE market_cap END AS market_cap,
       b + interval '1 minute' <= %(now)s AS closed,
       close IS NULL AS filled,
       COALESCE(samples, 0) AS samples,
       (NOT seeded AND b = first_b) AS partial
FROM f
WHERE b >= %(since)s AND (close IS NOT NULL OR c_close IS NOT NULL)
"""


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


@transaction.atomic
def candles_build_1m(
    *,
    since: datetime,
    until: datetime,
    coin_ids: Iterable[int] | None = None,
    polled: Iterable[tuple[int, datetime]] = (),
    now: datetime | None = None,
) -> UpsertResult:
    """(Re)build the 1m candles of minutes [since, until) from the recorded ticks.

    A minute with ticks: open = first tick, high/low = extremes, close = last tick (by upstream
    time), ``volume_24h``/``market_cap`` = last tick's, ``volume`` = null (CoinGecko has no traded
    volume), ``samples`` = the number of ticks. The coin's first observed minute (no older 1m candle
    exists) is ``partial``: it started before our first observation. A minute without ticks that was
    polled successfully — listed in ``polled`` as (coin_id, any time inside the minute), or already
    stored as filled — is carried forward flat from the previous close and marked ``filled``
    (``samples`` 0). Any other minute stays a gap (no row).
    Rows are written with the shared upsert (source ``ticks``); nothing is ever deleted.
    """
    now = now or timezone.now()
    since, until = _minute(since), _minute(until - timedelta(microseconds=1)) + timedelta(minutes=1)
    pc: list[int] = []
    pb: list[datetime] = []
    for coin_id, t in polled:
        pc.append(coin_id)
        pb.append(_minute(t))
    params: dict[str, Any] = {"since": since, "until": until, "pc": pc, "pb": pb, "now": now}
    with connection.cursor() as cur:
        if coin_ids is None:
            # every coin with a tick in the range or a poll: keeps all reads on the (coin, ...) keys
            cur.execute(
                "SELECT DISTINCT coin_id FROM marketdata_tick WHERE time >= %s AND time < %s", [since, until]
            )
            coin_ids = {r[0] for r in cur.fetchall()} | set(pc)
        params["coins"] = list(coin_ids)
        coin_filter = "AND coin_id = ANY(%(coins)s::bigint[])"
        partitions.partitions_ensure(timeframe="1m", start=since, end=until - timedelta(minutes=1))
        sql = _BUILD_1M_SQL.format(epoch=EPOCH, coin_filter=coin_filter)
        return _run_upsert(cur, sql, params, source="ticks")


# --- roll-ups ------------------------------------------------------------------------------------
_ROLLUP_SQL = """
WITH agg AS (
    SELECT coin_id, date_bin(%(iv)s, bucket_start, '{epoch}') AS b,
           (array_agg(open ORDER BY bucket_start))[1] AS open,
           max(high) AS high, min(low) AS low,
           (array_agg(close ORDER BY bucket_start DESC))[1] AS close,
           sum(volume) AS volume,
           (array_agg(volume_24h ORDER BY bucket_start DESC)
                FILTER (WHERE volume_24h IS NOT NULL))[1] AS volume_24h,
           (array_agg(market_cap ORDER BY bucket_start DESC)
                FILTER (WHERE market_cap IS NOT NULL))[1] AS market_cap,
           bool_and(filled) AS filled,
           CASE WHEN count(samples) = count(*) THEN sum(samples)::int4 END AS samples,
           bool_or(partial) AS any_partial,
           min(bucket_start) AS first_part
    FROM marketdata_candle
    WHERE timeframe = %(src_tf)s AND coin_id = ANY(%(coins)s::bigint[])
      AND bucket_start >= %(since)s AND bucket_start < %(until)s
    GROUP BY coin_id, date_bin(%(iv)s, bucket_start, '{epoch}')
)
SELECT * FROM (
    SELECT coin_id, %(tf)s::varchar(3) AS timeframe, b AS bucket_start, open, high, low, close, volume,
           volume_24h, market_cap, b + %(iv)s <= %(now)s AS closed, filled, samples,
           CASE WHEN any_partial THEN true
                -- the first part is missing: partial only if the series starts inside this bucket
                -- (rare, and then one backward probe of the primary key)
                WHEN first_part > b THEN NOT EXISTS (
                    SELECT 1 FROM marketdata_candle e
                    WHERE e.coin_id = agg.coin_id AND e.timeframe = %(src_tf)s AND e.bucket_start < agg.b
                )
                ELSE false
           END AS partial
    FROM agg
) r
-- a partial roll-up never replaces a full candle another source wrote (upstream OHLC history: the
-- daily candle of the day the hourly history starts in stays upstream's full one)
WHERE NOT r.partial OR NOT EXISTS (
    SELECT 1 FROM marketdata_candle x
    WHERE x.coin_id = r.coin_id AND x.timeframe = %(tf)s AND x.bucket_start = r.bucket_start
      AND NOT x.partial AND x.source <> 'rollup'
)
"""


def bucket_floor(timeframe: str, t: datetime) -> datetime:
    """Start of the bucket of ``timeframe`` containing ``t``: the grid starts at
    :data:`~marketdata.models.BUCKET_ORIGIN` (Monday 1970-01-05 00:00 UTC), so 4h buckets start at
    00, 04, … 20 UTC, days at 00:00 UTC and weeks on Mondays 00:00 UTC."""
    step = TIMEFRAME_DELTA[timeframe]
    return t - ((t - BUCKET_ORIGIN) % step)


@transaction.atomic
def candles_rollup(
    *,
    since: datetime,
    until: datetime,
    coin_ids: Iterable[int] | None = None,
    now: datetime | None = None,
    base: str = "1m",
) -> dict[str, UpsertResult]:
    """Roll up ``base`` candles in [since, until) into every timeframe built from it
    (:data:`~marketdata.models.ROLLUP_SOURCE`: 1m → 5m → 15m → 1h → 4h, 1h → 1d → 1w).

    Incremental: only the buckets of each higher timeframe that contain a source bucket of the
    given range are recomputed (each from all of its source candles), in SQL, through the shared
    upsert (source ``rollup``). open = first, high = max, low = min, close = last, volume = sum
    (null if all null), volume_24h / market_cap = last non-null, filled = all sources filled,
    samples = sum (null if any source has none), partial = a source is partial or the series starts
    inside the bucket (first source bucket missing and no earlier one stored) — a partial bucket is
    not written over a full candle of another source (upstream history),
    closed = the bucket's end is not after ``now`` — so the current bucket is readable and open.
    Pass the range (and coins) a write changed, e.g. from ``UpsertResult.spans``.
    """
    now = now or timezone.now()
    if coin_ids is None:
        with connection.cursor() as cur:
            cur.execute("SELECT id FROM marketdata_coin")
            coins = [r[0] for r in cur.fetchall()]
    else:
        coins = list(coin_ids)
    results: dict[str, UpsertResult] = {}
    # the range of source buckets each timeframe's recomputed buckets cover
    ranges: dict[str, tuple[datetime, datetime]] = {base: (since, until)}
    with connection.cursor() as cur:
        for tf in rollup_targets(base):
            src_tf = ROLLUP_SOURCE[tf]
            step = TIMEFRAME_DELTA[tf]
            src_lo, src_hi = ranges[src_tf]
            lo = bucket_floor(tf, src_lo)
            hi = bucket_floor(tf, src_hi - timedelta(microseconds=1)) + step
            ranges[tf] = (lo, hi)
            partitions.partitions_ensure(timeframe=tf, start=lo, end=hi - step)
            sql = _ROLLUP_SQL.format(epoch=EPOCH)
            params = {
                "tf": tf,
                "iv": step,
                "src_tf": src_tf,
                "coins": coins,
                "since": lo,
                "until": hi,
                "now": now,
            }
            results[tf] = _run_upsert(cur, sql, params, source="rollup")
    return results


def candles_rollup_result(result: UpsertResult, *, now: datetime | None = None) -> dict[str, UpsertResult]:
    """Roll up whatever a lower-timeframe write changed (convenience for callers of the write path)."""
    out: dict[str, UpsertResult] = {}
    for tf in TIMEFRAMES:
        span = result.spans.get(tf)
        if span and rollup_targets(tf):
            for k, v in candles_rollup(
                since=span[0],
                until=span[1] + TIMEFRAME_DELTA[tf],
                coin_ids=result.changed_coin_ids,
                now=now,
                base=tf,
            ).items():
                out.setdefault(k, UpsertResult()).merge(v)
    return out


@transaction.atomic
def candles_close(*, now: datetime | None = None) -> dict[str, int]:
    """Mark closed every open candle (any coin, any timeframe) whose bucket has ended by ``now``.

    Cheap at any table size: a partial index holds only open candles. This is what closes the last
    minute of a coin whose next polls failed, and the buckets of every timeframe at their end.
    Returns {timeframe: candles closed}; bumps the cache versions of the series it touched.
    """
    now = now or timezone.now()
    closed: dict[str, int] = {}
    pairs: set[tuple[int, str]] = set()
    with connection.cursor() as cur:
        for tf, step in TIMEFRAME_DELTA.items():
            cur.execute(
                "WITH c AS (UPDATE marketdata_candle SET closed = true, revision = revision + 1, "
                "updated_at = %s WHERE NOT closed AND timeframe = %s AND bucket_start <= %s "
                "RETURNING coin_id, bucket_start), "
                # the screener's change log (see _UPSERT_SQL)
                "logged AS (INSERT INTO marketdata_candlechange (timeframe, coin_id, bucket_start) "
                "SELECT %s, coin_id, min(bucket_start) FROM c GROUP BY coin_id) "
                "SELECT coin_id FROM c",
                [timezone.now(), tf, now - step, tf],
            )
            ids = {r[0] for r in cur.fetchall()}
            if ids:
                closed[tf] = cur.rowcount
                pairs.update((c, tf) for c in ids)
    if pairs:
        transaction.on_commit(lambda: cache.candles_changed(pairs=pairs))
    return closed


# --- coins, snapshots, ticks ---------------------------------------------------------------------
@transaction.atomic
def coins_upsert(*, coins: Iterable[CoinIn | Mapping], seen_at: datetime | None = None) -> dict[str, int]:
    """Insert new coins, refresh symbol/name of known ones, mark them active and seen.

    Returns {upstream_id: coin id} for every coin given. Never deletes.
    """
    seen_at = seen_at or timezone.now()
    ids: list[str] = []
    symbols: list[str] = []
    names: list[str] = []
    seen: set[str] = set()
    for coin in coins:
        c = coin if isinstance(coin, CoinIn) else CoinIn(coin["upstream_id"], coin["symbol"], coin["name"])
        if not c.upstream_id or c.upstream_id in seen:
            continue
        seen.add(c.upstream_id)
        ids.append(c.upstream_id)
        symbols.append((c.symbol or "")[:100])
        names.append((c.name or "")[:300])
    if not ids:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            """
            WITH input AS (
                SELECT * FROM unnest(%(ids)s::text[], %(symbols)s::text[], %(names)s::text[]) AS x(u, s, n)
            ),
            ins AS (
                INSERT INTO marketdata_coin AS c (upstream_id, symbol, name, active, first_seen, last_seen)
                SELECT u, s, n, true, %(t)s, %(t)s FROM input
                ON CONFLICT (upstream_id) DO UPDATE SET
                    symbol = EXCLUDED.symbol, name = EXCLUDED.name, active = true,
                    last_seen = GREATEST(c.last_seen, EXCLUDED.last_seen)
                -- the per-minute refresh sees every coin: rewrite a row only when something changed
                -- (last_seen is kept to the hour), not 10,000 rows a minute
                WHERE (c.symbol, c.name, c.active) IS DISTINCT FROM (EXCLUDED.symbol, EXCLUDED.name, true)
                   OR c.last_seen < EXCLUDED.last_seen - interval '1 hour'
                RETURNING upstream_id, id
            )
            SELECT upstream_id, id FROM ins
            UNION ALL
            SELECT c.upstream_id, c.id FROM marketdata_coin c JOIN input ON input.u = c.upstream_id
            WHERE c.upstream_id NOT IN (SELECT upstream_id FROM ins)
            """,
            {"ids": ids, "symbols": symbols, "names": names, "t": seen_at},
        )
        return dict(cur.fetchall())


@transaction.atomic
def coins_mark_inactive(*, keep_upstream_ids: Iterable[str]) -> int:
    """Mark every active coin not in ``keep_upstream_ids`` inactive (delisted). Returns how many."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE marketdata_coin SET active = false WHERE active AND NOT (upstream_id = ANY(%s::text[]))",
            [list(keep_upstream_ids)],
        )
        return cur.rowcount


@transaction.atomic
def snapshots_upsert(*, rows: Iterable[SnapshotIn], part: str = "all") -> int:
    """Write the latest snapshot of each coin given. Returns the number of snapshots written.

    ``part`` says which columns of an existing row change (a new row gets every column given):
    ``"all"`` (a /coins/markets record with a new price), ``"price"`` (a /simple/price observation:
    price, market cap, 24h volume and change, ``last_updated``; the 24h high/low widen to include
    the price; the details stay) or ``"details"`` (a /coins/markets record whose price we already
    have: rank, 24h high/low, 1h/7d/30d change, supply, FDV, ATH/ATL, image; the price stays).
    With "all" and "price" an older ``last_updated`` never overwrites a newer one. Rows are written
    in coin order, so concurrent writers lock them in the same order.
    """
    if part not in SNAPSHOT_PARTS:
        raise ValueError(f"part must be one of {', '.join(SNAPSHOT_PARTS)}")
    latest: dict[int, SnapshotIn] = {}
    for row in rows:  # keep the last of duplicates
        r = row if isinstance(row, SnapshotIn) else SnapshotIn(**row)
        latest[r.coin_id] = r
    if not latest:
        return 0
    cols: list[list] = [[] for _ in SnapshotIn._fields]
    for coin_id in sorted(latest):
        for col, v in zip(cols, latest[coin_id], strict=True):
            col.append(v)
    details_at = cols[SnapshotIn._fields.index("fetched_at")] if part != "price" else [None] * len(cols[0])
    arrays = ", ".join(f"%s::{t}[]" for t in _SNAPSHOT_TYPES)
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO marketdata_marketsnapshot AS s
                (coin_id, price, market_cap, rank, volume_24h, high_24h, low_24h, change_24h_pct,
                 last_updated, fetched_at, change_1h_pct, change_7d_pct, change_30d_pct,
                 circulating_supply, total_supply, max_supply, fully_diluted_valuation, ath, ath_date,
                 atl, atl_date, image_url, details_updated)
            SELECT c, p, m, r, v, h, l, c24, lu, fa, c1, c7, c30, cs, ts, ms, fdv, ath, athd, atl, atld,
                   COALESCE(img, ''), du
            FROM unnest({arrays}, %s::timestamptz[])
                AS x(c, p, m, r, v, h, l, c24, lu, fa, c1, c7, c30, cs, ts, ms, fdv, ath, athd, atl, atld,
                     img, du)
            ORDER BY c
            ON CONFLICT (coin_id) DO UPDATE SET {_SNAPSHOT_ON_CONFLICT[part]}
            """,  # noqa: S608 - the SQL pieces are constants of this module
            [*cols, details_at],
        )
        written = cur.rowcount
    if written:
        transaction.on_commit(cache.snapshots_changed)
    return written


class RateIn(NamedTuple):
    code: str
    name: str
    unit: str
    kind: str
    per_btc: float


@transaction.atomic
def exchange_rates_replace(*, rates: Iterable[RateIn], fetched_at: datetime) -> int:
    """Store the latest upstream exchange rates (units per 1 BTC) with each one's rate per USD.
    Without a USD rate nothing can be converted: nothing is written (returns 0). Rates of
    currencies no longer listed are kept (their ``fetched_at`` shows their age)."""
    given = {r.code.lower(): r for r in rates}
    usd = given.get("usd")
    if usd is None or not usd.per_btc > 0:
        logger.warning("exchange rates without a USD rate: nothing stored")
        return 0
    for code, r in given.items():
        ExchangeRate.objects.update_or_create(
            code=code,
            defaults={
                "name": r.name[:100],
                "unit": r.unit[:20],
                "kind": r.kind[:20],
                "per_btc": r.per_btc,
                "per_usd": r.per_btc / usd.per_btc,
                "fetched_at": fetched_at,
            },
        )
    transaction.on_commit(cache.snapshots_changed)  # converted prices/markets change with the rates
    return len(given)


class GlobalIn(NamedTuple):
    time: datetime
    total_market_cap: float
    total_volume: float
    btc_dominance: float | None
    eth_dominance: float | None
    active_coins: int | None
    markets: int | None
    market_cap_change_24h_pct: float | None


@transaction.atomic
def global_snapshot_record(*, row: GlobalIn, fetched_at: datetime) -> bool:
    """Store one /global observation keyed by its upstream time; the same time again changes
    nothing. Returns whether a row was added."""
    _obj, created = GlobalSnapshot.objects.get_or_create(
        time=row.time, defaults={**row._asdict(), "fetched_at": fetched_at}
    )
    if created:
        transaction.on_commit(cache.global_changed)
    return created


@transaction.atomic
def ticks_record(*, ticks: Iterable[TickIn], fetched_at: datetime | None = None) -> TickResult:
    """Record upstream ticks; a tick already recorded (same coin, same upstream time) counts once.

    Ticks without a time or with a negative / non-finite price are rejected.
    """
    fetched_at = fetched_at or timezone.now()
    cols: list[list] = [[], [], [], [], []]
    result = TickResult()
    for tick in ticks:
        t = tick if isinstance(tick, TickIn) else TickIn(**tick)
        if t.time is None or t.price is None or not (0 <= t.price < float("inf")):
            result.rejected += 1
            continue
        for col, v in zip(cols, t, strict=True):
            col.append(v)
    if not cols[0]:
        return result
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO marketdata_tick (coin_id, time, price, market_cap, volume_24h, fetched_at)
            SELECT c, t, p, m, v, %s FROM unnest(%s::bigint[], %s::timestamptz[], %s::float8[],
                                                 %s::float8[], %s::float8[]) AS x(c, t, p, m, v)
            ON CONFLICT (coin_id, time) DO NOTHING
            RETURNING coin_id, time
            """,
            [fetched_at, *cols],
        )
        new = cur.fetchall()
    result.inserted = len(new)
    result.duplicates = len(cols[0]) - len(new)
    if new:
        result.earliest = min(t for _, t in new)
        result.coin_ids = {c for c, _ in new}
    return result


@transaction.atomic
def series_watermark_advance(*, coin_id: int, timeframe: str, source: str, until: datetime) -> bool:
    """Record that everything of the (coin, timeframe, source) series before ``until`` was fetched.

    The watermark only moves forward: a re-fetch of an older range never moves it back. Returns
    whether it was created or moved.
    """
    mark, created = SeriesWatermark.objects.get_or_create(
        coin_id=coin_id, timeframe=timeframe, source=source, defaults={"until": until}
    )
    if created:
        return True
    if until > mark.until:
        mark.until = until
        mark.save(update_fields=["until", "updated_at"])
        return True
    return False


@transaction.atomic
def series_watermark_extend(
    *,
    coin_id: int,
    timeframe: str,
    source: str,
    since: datetime,
    until: datetime,
    start_reached: bool = False,
) -> bool:
    """Record that [since, until) of the (coin, timeframe, source) series was fetched, for a series
    filled newest first (``since``/``start_reached``; :func:`series_watermark_advance` is the
    forward-only variant).

    The recorded range grows when the fetched one touches or overlaps it (``since`` moves back,
    ``until`` forward); a range that does not touch it changes nothing (it would leave a hole).
    ``start_reached``: upstream has nothing before ``since`` — kept once the recorded range starts
    there. Returns whether the watermark was created or changed.
    """
    mark = (
        SeriesWatermark.objects.select_for_update()
        .filter(coin_id=coin_id, timeframe=timeframe, source=source)
        .first()
    )
    if mark is None:
        SeriesWatermark.objects.create(
            coin_id=coin_id,
            timeframe=timeframe,
            source=source,
            since=since,
            until=until,
            start_reached=start_reached,
        )
        return True
    lo = mark.since if mark.since is not None else mark.until
    if until < lo or since > mark.until:
        return False
    changed: list[str] = []
    if since < lo or mark.since is None:
        mark.since = min(since, lo)
        changed.append("since")
    if until > mark.until:
        mark.until = until
        changed.append("until")
    if start_reached and since <= mark.since and not mark.start_reached:
        mark.start_reached = True
        changed.append("start_reached")
    if changed:
        mark.save(update_fields=[*changed, "updated_at"])
    return bool(changed)
