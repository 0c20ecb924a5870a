"""The screener: a precomputed table of the latest indicators of every coin (filtered by
:func:`marketdata.selectors.screener_page`); :data:`FIELDS` names its columns.

:func:`latest_indicators_refresh` refreshes, for one timeframe, the indicators of the newest CLOSED
candle of every active coin with the fixed parameters in :data:`SCREENER_PARAMS`, writes them to
``marketdata_latestindicator`` (one upsert) and bumps the screener's cache version. It is a plain
function; Celery beat runs it after each roll-up (marketdata.tasks wraps it in a task).

The values are those of the coin's last :data:`HISTORY` closed candles. For the windowed indicators
that is exact. For the EMA-type ones (ema, rsi, macd, atr) the weight left on anything older than
``HISTORY`` candles is ``(1 - k)^HISTORY`` — for the screener's periods (slowest: Wilder 14,
k = 1/14) below 1e-19 at 600 candles, under double precision — so the values equal the
full-history values of ``/v1/coins/{id}/indicators/...`` to floating-point rounding.

Two ways to get them (docs/indicators.md "The screener table"):

- **incremental** (every coin with a stored state, normally all): the state of a coin
  (:mod:`marketdata.screener_state`: the indicators' recursive parts and its last closes) is kept
  in its row as of :data:`REREAD` candles before its newest; a refresh reads only the candles after
  that anchor (one index range scan per coin, about REREAD + 1 candles) and moves the state by them;
- **full** (TA-Lib over the last HISTORY candles, :func:`compute_latest`): coins without a state
  (new, fewer than HISTORY closed candles), coins whose candles at or before the anchor changed
  (the write path logs every change to closed candles in ``marketdata_candlechange``, which the
  refresh consumes), stale anchors, or everything with ``full=True``. A full recomputation also
  stores a fresh state.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.utils import timezone

from marketdata import indicators, screener_state
from marketdata.api import caching
from marketdata.models import TIMEFRAME_DELTA

logger = logging.getLogger(__name__)

HISTORY = 600
#: Candles before a coin's newest that its stored state is kept behind: each refresh re-reads them,
#: so a late correction of a recent candle (late ticks rebuild the last minutes) costs nothing extra.
REREAD = 10
#: The window read covers HISTORY + this many buckets: a coin whose last candles are up to that
#: many buckets old (an upstream hiccup) is still read in the one pass.
WINDOW_SLACK = 60
SCREENER_PARAMS: dict[str, dict[str, Any]] = {
    "sma": {"period": 20},
    "ema": {"period": 20},
    "rsi": {"period": 14},
    "macd": {"fast": 12, "slow": 26, "signal": 9},
    "bbands": {"period": 20, "stddev": 2.0},
    "atr": {"period": 14},
    "volatility": {"period": 30},
}
#: Screener fields (the table's columns) and their meaning, for filters and docs.
FIELDS = {
    "close": "Close of the newest closed candle.",
    "change_pct": "Close vs the previous candle's close, in percent.",
    "volume_24h": "Rolling 24h volume at the candle's close.",
    "sma": "SMA(20) of closes.",
    "ema": "EMA(20) of closes.",
    "rsi": "RSI(14), Wilder.",
    "macd": "MACD(12, 26, 9) line.",
    "macd_signal": "MACD(12, 26, 9) signal line.",
    "macd_histogram": "MACD(12, 26, 9) histogram.",
    "bb_upper": "Bollinger upper band (20, 2).",
    "bb_middle": "Bollinger middle band (20, 2).",
    "bb_lower": "Bollinger lower band (20, 2).",
    "atr": "ATR(14), Wilder.",
    "volatility": "Annualised volatility of log returns over 30 candles.",
}
_COLUMNS = tuple(FIELDS)


@dataclass
class RefreshResult:
    timeframe: str
    coins: int
    rows_read: int
    seconds: float
    #: Seconds spent in each part: read, compute, write.
    parts: dict[str, float] = field(default_factory=dict)
    #: Coins recomputed in full (the others: incrementally).
    full: int = 0


_REQUESTS = list(SCREENER_PARAMS.items())


def compute_latest(timeframe: str, high: np.ndarray, low: np.ndarray, close: np.ndarray, vol24) -> dict:
    """The screener fields for the last element of one series (oldest → newest arrays): the seven
    indicators in one :func:`marketdata.indicators.compute_many` call (TA-Lib, the series scaled once)."""
    outputs = indicators.compute_many(
        _REQUESTS, timeframe=timeframe, series={"high": high, "low": low, "close": close}
    )
    values = dict(zip(SCREENER_PARAMS, outputs, strict=True))

    def last(name: str, output: str = "value") -> float | None:
        value = values[name][output][-1]
        return None if np.isnan(value) else float(value)

    change = None
    if len(close) >= 2 and close[-2] != 0:
        change = float((close[-1] / close[-2] - 1.0) * 100.0)
    return {
        "close": float(close[-1]),
        "change_pct": change,
        "volume_24h": vol24,
        "sma": last("sma"),
        "ema": last("ema"),
        "rsi": last("rsi"),
        "macd": last("macd", "macd"),
        "macd_signal": last("macd", "signal"),
        "macd_histogram": last("macd", "histogram"),
        "bb_upper": last("bbands", "upper"),
        "bb_middle": last("bbands", "middle"),
        "bb_lower": last("bbands", "lower"),
        "atr": last("atr"),
        "volatility": last("volatility"),
    }


#: One candle as the reads send it: bucket_start (epoch seconds), high, low, close, volume_24h as
#: big-endian float8 (float8send).
_RECORD = np.dtype([("t", ">f8"), ("h", ">f8"), ("l", ">f8"), ("c", ">f8"), ("v", ">f8")])
_RECORDS = (
    "string_agg(float8send(extract(epoch FROM bucket_start)::float8) || float8send(high) || float8send(low)"
    " || float8send(close) || float8send(coalesce(volume_24h, 'NaN')), ''::bytea ORDER BY bucket_start)"
)

_WINDOW_SQL = f"""
SELECT x.coin_id, count(*), {_RECORDS}
FROM marketdata_candle x JOIN marketdata_coin c ON c.id = x.coin_id AND c.active
WHERE x.timeframe = %(tf)s AND x.closed AND x.bucket_start >= %(since)s {{coin_filter}}
GROUP BY x.coin_id
"""  # noqa: S608 - constant pieces; every value is a parameter

_LATERAL_SQL = f"""
SELECT c.id, k.n, k.records
FROM marketdata_coin c
CROSS JOIN LATERAL (
    SELECT count(*) AS n, {_RECORDS} AS records
    FROM (SELECT bucket_start, high, low, close, volume_24h FROM marketdata_candle x
          WHERE x.coin_id = c.id AND x.timeframe = %(tf)s AND x.closed
          ORDER BY x.bucket_start DESC LIMIT %(history)s) w
) k
WHERE c.active AND k.n > 0 AND c.id = ANY(%(ids)s)
"""  # noqa: S608 - constant pieces; every value is a parameter

#: The closed candles of each coin after its anchor (one index range scan per coin).
_SINCE_SQL = f"""
SELECT s.coin_id, k.n, k.records
FROM unnest(%(ids)s::int8[], %(anchors)s::float8[]) AS s(coin_id, anchor)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, {_RECORDS} AS records FROM marketdata_candle x
    WHERE x.coin_id = s.coin_id AND x.timeframe = %(tf)s AND x.closed
      AND x.bucket_start > to_timestamp(s.anchor) AND x.bucket_start > %(lo)s
) k
"""  # noqa: S608 - constant pieces; every value is a parameter


#: Rows to write, by column: "coin_id", "time", FIELDS, "anchor" (arrays; NaN = null), "state".
_Rows = dict[str, Any]


@dataclass
class _Candles:
    """Closed candles of one coin, oldest first: times (epoch seconds), high, low, close, volume_24h
    (NaN where null)."""

    coin_id: int
    t: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    vol: np.ndarray

    @classmethod
    def unpack(cls, coin_id: int, records: bytes | None) -> _Candles:
        table = np.frombuffer(records or b"", dtype=_RECORD)[-HISTORY:]
        t, h, lo, c, v = (np.ascontiguousarray(table[k], dtype=np.float64) for k in ("t", "h", "l", "c", "v"))
        return cls(coin_id, t, h, lo, c, v)


def _read(timeframe: str, coin_ids: list[int] | None, now: datetime) -> list[_Candles]:
    """The last HISTORY closed candles of each active coin (or of ``coin_ids``), in coin order.

    Most coins have a candle in every bucket: one query over the closed candles of the last
    HISTORY + WINDOW_SLACK buckets (partition-pruned) gives them all, one row per coin whose
    candles arrive as one ``bytea`` of packed doubles (``float8send``) that numpy reads without a
    Python object per value. Coins with fewer candles in that window (gaps, a young or a stale
    coin) are read again, their last HISTORY candles whatever their age (one LATERAL index scan
    per coin), so every coin gets exactly "its last HISTORY closed candles".
    """
    if coin_ids is not None and not coin_ids:
        return []
    connection.ensure_connection()
    since = now - TIMEFRAME_DELTA[timeframe] * (HISTORY + WINDOW_SLACK)
    coin_filter = "AND x.coin_id = ANY(%(ids)s)" if coin_ids is not None else ""
    args = {"tf": timeframe, "since": since, "ids": coin_ids, "history": HISTORY}
    rows: list[_Candles] = []
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(_WINDOW_SQL.format(coin_filter=coin_filter), args, binary=True)
        complete = set()
        for coin_id, count, records in cur.fetchall():
            if count >= HISTORY:
                rows.append(_Candles.unpack(coin_id, records))
                complete.add(coin_id)
        only = " AND id = ANY(%(ids)s)" if coin_ids is not None else ""
        cur.execute(f"SELECT id FROM marketdata_coin WHERE active{only}", args)  # noqa: S608 - constant
        rest = [row[0] for row in cur.fetchall() if row[0] not in complete]
        if rest:
            cur.execute(_LATERAL_SQL, {**args, "ids": rest}, binary=True)
            rows += [_Candles.unpack(coin_id, records) for coin_id, _, records in cur.fetchall()]
    rows.sort(key=lambda row: row.coin_id)
    return rows


def _read_since(timeframe: str, anchors: dict[int, float]) -> dict[int, _Candles]:
    """The closed candles of each coin after its anchor (epoch seconds), oldest first."""
    if not anchors:
        return {}
    ids = sorted(anchors)
    args = {
        "tf": timeframe,
        "ids": ids,
        "anchors": [anchors[i] for i in ids],
        "lo": datetime.fromtimestamp(min(anchors.values()), UTC),
    }
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(_SINCE_SQL, args, binary=True)
        return {coin_id: _Candles.unpack(coin_id, records) for coin_id, _, records in cur.fetchall()}


def _changes_take(cur, timeframe: str, coin_ids: list[int] | None) -> dict[int, float]:
    """Consume the change log of ``timeframe``: {coin: oldest changed bucket (epoch seconds)}."""
    only = "AND coin_id = ANY(%s)" if coin_ids is not None else ""
    cur.execute(
        "WITH d AS (DELETE FROM marketdata_candlechange WHERE timeframe = %s "  # noqa: S608 - constant
        f"{only} RETURNING coin_id, bucket_start) "
        "SELECT coin_id, extract(epoch FROM min(bucket_start))::float8 FROM d GROUP BY coin_id",
        [timeframe, coin_ids] if coin_ids is not None else [timeframe],
    )
    return dict(cur.fetchall())


def _states(cur, timeframe: str, coin_ids: list[int] | None) -> dict[int, tuple[float, np.ndarray]]:
    """The stored states of the active coins: {coin: (anchor in epoch seconds, state vector)}."""
    only = "AND li.coin_id = ANY(%s)" if coin_ids is not None else ""
    cur.execute(
        "SELECT li.coin_id, extract(epoch FROM li.anchor)::float8, li.state "  # noqa: S608 - constant
        "FROM marketdata_latestindicator li JOIN marketdata_coin c ON c.id = li.coin_id AND c.active "
        f"WHERE li.timeframe = %s AND li.state IS NOT NULL {only}",
        [timeframe, coin_ids] if coin_ids is not None else [timeframe],
    )
    out = {}
    for coin_id, anchor, state in cur.fetchall():
        vector = np.frombuffer(state, dtype="<f8")
        if len(vector) == screener_state.WIDTH:  # another layout (an older release) is rebuilt
            out[coin_id] = (anchor, vector)
    return out


def latest_indicators_refresh(
    *, timeframe: str, coin_ids: list[int] | None = None, now: datetime | None = None, full: bool = False
) -> RefreshResult:
    """Refresh the latest-indicator rows of ``timeframe`` (all active coins, or ``coin_ids``).

    Incremental: a coin with a stored state reads only its candles after the state's anchor and
    moves the state by them (:mod:`marketdata.screener_state`). A coin is recomputed in full from its
    last HISTORY candles (TA-Lib, :func:`compute_latest`) when it has no state (new, or fewer than
    HISTORY closed candles), when the change log says a candle at or before its anchor changed
    (a late correction, a history fill, a gap filled), when its anchor is older than HISTORY buckets
    (a stale coin, or the screener was not run for that long), or with ``full=True`` (every coin: the
    computation before issue 16, kept for the benchmark and for operators).

    ``now``: the time of the refresh (default: the clock); only where the window read starts and
    which anchors are stale.
    """
    if timeframe not in TIMEFRAME_DELTA:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    began = time.monotonic()
    now = now or timezone.now()
    step = TIMEFRAME_DELTA[timeframe]
    with transaction.atomic():
        connection.ensure_connection()
        with connection.cursor() as cur:
            # one refresh of a timeframe at a time: each consumes the change log and moves the states
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext('marketdata.screener'), hashtext(%s))", [timeframe]
            )
            changes = _changes_take(cur, timeframe, coin_ids)
            states = {} if full else _states(cur, timeframe, coin_ids)
        horizon = (now - step * HISTORY).timestamp()
        incremental = {
            coin: anchor
            for coin, (anchor, _) in states.items()
            if anchor >= horizon and changes.get(coin, math.inf) > anchor
        }
        fresh = _read_since(timeframe, incremental)
        everything = coin_ids is None and not incremental  # a first refresh, or full=True
        windows = _read(timeframe, None if everything else _full_ids(coin_ids, incremental), now)
        t_read = time.monotonic()
        out = _merge(_advance(timeframe, fresh, states), _recompute(timeframe, windows))
        t_compute = time.monotonic()
        _write(timeframe, out, now, coin_ids)
    caching.screener_changed(timeframe)
    done = time.monotonic()
    parts = {"read": t_read - began, "compute": t_compute - t_read, "write": done - t_compute}
    read = sum(len(c.t) for c in fresh.values()) + sum(len(w.t) for w in windows)
    coins = len(out["coin_id"]) if out else 0
    result = RefreshResult(timeframe, coins, read, done - began, parts, full=len(windows))
    logger.info("latest indicators %s: %d coins (%d in full) from %d candles in %.2fs",
                timeframe, result.coins, result.full, result.rows_read, result.seconds)  # fmt: skip
    return result


def _full_ids(coin_ids: list[int] | None, incremental: dict[int, float]) -> list[int]:
    """The active coins (of ``coin_ids``) that are not refreshed incrementally."""
    with connection.cursor() as cur:
        if coin_ids is None:
            cur.execute("SELECT id FROM marketdata_coin WHERE active")
        else:
            cur.execute("SELECT id FROM marketdata_coin WHERE active AND id = ANY(%s)", [coin_ids])
        return sorted(row[0] for row in cur.fetchall() if row[0] not in incremental)


def _advance(
    timeframe: str, fresh: dict[int, _Candles], states: dict[int, tuple[float, np.ndarray]]
) -> _Rows:
    """Rows of the coins refreshed incrementally: each state moved by the candles after its anchor,
    kept (for the next refresh) REREAD candles before the newest."""
    if not fresh:
        return {}
    ids = sorted(fresh)
    counts = np.array([len(fresh[c].t) for c in ids])
    width = int(counts.max()) if len(ids) else 0
    state = np.array([states[c][1] for c in ids])
    anchor_state = state.copy()
    anchor_time = np.array([states[c][0] for c in ids])
    # candles right-aligned (the newest in the last column): the anchor column is the same for all
    t, h, lo, c, v = (np.zeros((len(ids), width)) for _ in range(5))
    for row, coin in enumerate(ids):
        k = counts[row]
        if k:
            candles = fresh[coin]
            t[row, width - k :], h[row, width - k :], lo[row, width - k :] = (
                candles.t,
                candles.high,
                candles.low,
            )
            c[row, width - k :], v[row, width - k :] = candles.close, candles.vol
    keep_at = width - REREAD - 1
    for col in range(width):
        rows = counts >= width - col
        if rows.all():
            screener_state.advance(state, h[:, col], lo[:, col], c[:, col], v[:, col])
        else:
            part = state[rows]
            screener_state.advance(part, h[rows, col], lo[rows, col], c[rows, col], v[rows, col])
            state[rows] = part
        if col == keep_at:
            anchor_state[rows] = state[rows]
            anchor_time[rows] = t[rows, col]
    values = screener_state.values(state, timeframe)
    return {
        "coin_id": np.array(ids, dtype=np.int64),
        "time": np.where(counts > 0, t[:, -1] if width else anchor_time, anchor_time),
        **values,
        "anchor": anchor_time,
        "state": [row.astype("<f8").tobytes() for row in anchor_state],
    }


def _recompute(timeframe: str, windows: list[_Candles]) -> _Rows:
    """Rows of the coins recomputed in full (TA-Lib over their last HISTORY candles), with a fresh
    state (after the candle REREAD before the newest) for those with HISTORY candles."""
    if not windows:
        return {}
    rows: _Rows = {
        "coin_id": np.array([w.coin_id for w in windows], dtype=np.int64),
        "time": np.array([w.t[-1] for w in windows]),
        "anchor": np.full(len(windows), np.nan),
        "state": [None] * len(windows),
    }
    for col in _COLUMNS:
        rows[col] = np.empty(len(windows))
    for i, w in enumerate(windows):
        values = compute_latest(timeframe, w.high, w.low, w.close, float(w.vol[-1]))
        for col in _COLUMNS:
            rows[col][i] = np.nan if values[col] is None else values[col]
    mature = [i for i, w in enumerate(windows) if len(w.t) >= HISTORY]
    if mature:
        stop = HISTORY - REREAD
        states = screener_state.initial(
            np.array([windows[i].high for i in mature]),
            np.array([windows[i].low for i in mature]),
            np.array([windows[i].close for i in mature]),
            np.array([windows[i].vol[stop - 1] for i in mature]),
            np.full(len(mature), stop),
        )
        for i, state in zip(mature, states, strict=True):
            rows["anchor"][i] = windows[i].t[stop - 1]
            rows["state"][i] = state.astype("<f8").tobytes()
    return rows


def _merge(*parts: _Rows) -> _Rows:
    """One set of rows, in coin order (upserts lock in coin order)."""
    parts = tuple(p for p in parts if p)
    if not parts:
        return {}
    ids = np.concatenate([p["coin_id"] for p in parts])
    order = np.argsort(ids, kind="stable")
    out: _Rows = {}
    for key in parts[0]:
        if key == "state":
            states = [s for p in parts for s in p["state"]]
            out[key] = [states[i] for i in order]
        else:
            out[key] = np.concatenate([p[key] for p in parts])[order]
    return out


def _write(timeframe: str, rows: _Rows, now, coin_ids: list[int] | None) -> None:
    """Upsert ``rows`` in one statement (arrays in binary; NaN = null, times in epoch seconds); delete
    the rows of coins no longer active."""
    cols = ("coin_id", "time", *_COLUMNS, "anchor", "state")
    keep = rows["coin_id"].tolist() if rows else []
    with psycopg.Cursor(connection.connection) as cur:
        if rows:
            types = ["int8[]", "float8[]"] + ["float8[]"] * len(_COLUMNS) + ["float8[]", "bytea[]"]
            unnest = ", ".join(f"%s::{t}" for t in types)
            names = ", ".join(f"u{i}" for i in range(len(cols)))
            select = ", ".join(
                f"u{i}" if col in ("coin_id", "state")
                else "to_timestamp(u1)" if col == "time"
                else f"to_timestamp(nullif(u{i}, 'NaN'))" if col == "anchor"
                else f"nullif(u{i}, 'NaN')"
                for i, col in enumerate(cols)
            )  # fmt: skip
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*cols[1:], "computed_at"))
            cur.execute(
                f"INSERT INTO marketdata_latestindicator (timeframe, computed_at, {', '.join(cols)}) "  # noqa: S608
                f"SELECT %s, %s, {select} FROM unnest({unnest}) AS u({names}) "
                f"ON CONFLICT (timeframe, coin_id) DO UPDATE SET {updates}",
                [timeframe, now, keep, *(rows[c].tolist() for c in cols[1:-1]), rows["state"]],
                binary=True,
            )
        # Rows of coins that are no longer active (or lost their history) go away.
        if coin_ids is None:
            cur.execute(
                "DELETE FROM marketdata_latestindicator WHERE timeframe = %s AND NOT coin_id = ANY(%s)",
                [timeframe, keep],
            )
