"""The screener: a precomputed table of the latest indicators of every coin (filtered by
:func:`marketdata.selectors.screener_page`); :data:`FIELDS` names its columns.

:func:`latest_indicators_refresh` recomputes, for one timeframe, the indicators of the newest
CLOSED candle of every active coin with the fixed parameters in :data:`SCREENER_PARAMS`, writes
them to ``marketdata_latestindicator`` (one upsert) and bumps the screener's cache version. It is a
plain function; Celery beat runs it after each roll-up (ingestion wraps it in a task).

History used: the last :data:`HISTORY` closed candles of each series (one binary COPY of the
window of the last HISTORY buckets for all coins, and one LATERAL index scan per coin only for the
coins with gaps in that window, see :func:`_read`). For the windowed indicators that is exact. For the EMA-type ones (ema, rsi, macd, atr) the
weight left on anything older than ``HISTORY`` candles is ``(1 - k)^HISTORY`` — for the screener's
periods (slowest: Wilder 14, k = 1/14) below 1e-19 at 600 candles, under double precision — so the
values equal the full-history values of ``/v1/coins/{id}/indicators/...`` to floating-point rounding.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.utils import timezone

from marketdata import indicators
from marketdata.api import caching
from marketdata.models import TIMEFRAME_DELTA

logger = logging.getLogger(__name__)

HISTORY = 600
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


#: One COPY row: (coin_id, bucket_start, high, low, close, volume_24h), every field non-null, in
#: PostgreSQL's binary COPY format (int16 field count, then int32 length + big-endian value each).
_COPY_ROW = np.dtype(
    [("n", ">i2"), ("l0", ">i4"), ("coin", ">i8"), ("l1", ">i4"), ("t", ">i8"), ("l2", ">i4"), ("h", ">f8"),
     ("l3", ">i4"), ("lo", ">f8"), ("l4", ">i4"), ("c", ">f8"), ("l5", ">i4"), ("v", ">f8")]
)  # fmt: skip
_COPY_HEADER = 19  # signature (11) + flags (4) + header extension length (4)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # binary timestamptz: microseconds since then

_WINDOW_SQL = """
COPY (SELECT x.coin_id, x.bucket_start, x.high, x.low, x.close, coalesce(x.volume_24h, 'NaN')
      FROM marketdata_candle x JOIN marketdata_coin c ON c.id = x.coin_id AND c.active
      WHERE x.timeframe = %(tf)s AND x.closed AND x.bucket_start >= %(since)s {coin_filter})
TO STDOUT (FORMAT BINARY)
"""

_LATERAL_SQL = """
SELECT c.id, k.last, k.vol, k.h, k.l, k.c
FROM marketdata_coin c
CROSS JOIN LATERAL (
    SELECT max(bucket_start) AS last, (array_agg(volume_24h ORDER BY bucket_start DESC))[1] AS vol,
           array_agg(high ORDER BY bucket_start) AS h, array_agg(low ORDER BY bucket_start) AS l,
           array_agg(close ORDER BY bucket_start) AS c
    FROM (SELECT bucket_start, high, low, close, volume_24h FROM marketdata_candle x
          WHERE x.coin_id = c.id AND x.timeframe = %(tf)s AND x.closed
          ORDER BY x.bucket_start DESC LIMIT %(history)s) w
) k
WHERE c.active AND k.last IS NOT NULL AND c.id = ANY(%(ids)s)
ORDER BY c.id
"""


def _read(timeframe: str, coin_ids: list[int] | None, now: datetime) -> list[tuple]:
    """(coin_id, last bucket_start, volume_24h, high, low, close) per active coin, with its last
    HISTORY closed candles as float64 arrays, oldest first.

    Most coins have a candle in every bucket: one binary COPY of the closed candles of the last
    HISTORY buckets (partition-pruned, one sequential pass; parsed by numpy without a Python object
    per row) gives them all. Coins with fewer candles in that window (gaps, a young or a stale coin)
    are read again, their last HISTORY candles whatever their age (one LATERAL index scan per coin),
    so every coin gets exactly "its last HISTORY closed candles".
    """
    connection.ensure_connection()
    raw = connection.connection
    since = now - TIMEFRAME_DELTA[timeframe] * (HISTORY + WINDOW_SLACK)
    coin_filter = "AND x.coin_id = ANY(%(ids)s)" if coin_ids is not None else ""
    args = {"tf": timeframe, "since": since, "ids": coin_ids, "history": HISTORY}
    buffer = bytearray()
    with psycopg.Cursor(raw) as cur:
        with cur.copy(_WINDOW_SQL.format(coin_filter=coin_filter), args) as copy:
            for chunk in copy:
                buffer += chunk
        cur.execute(
            "SELECT id FROM marketdata_coin WHERE active" + (" AND id = ANY(%(ids)s)" if coin_ids is not None else ""),
            args,
        )  # fmt: skip
        active = [row[0] for row in cur.fetchall()]
    rows: list[tuple] = []
    complete: set[int] = set()
    body = len(buffer) - _COPY_HEADER - 2  # minus the trailer (int16 -1)
    if body > 0:
        table = np.frombuffer(buffer, dtype=_COPY_ROW, count=body // _COPY_ROW.itemsize, offset=_COPY_HEADER)
        coin, t = table["coin"].astype(np.int64), table["t"].astype(np.int64)
        order = np.lexsort((t, coin))
        coin, t = coin[order], t[order]
        high, low, close = (table[k].astype(np.float64)[order] for k in ("h", "lo", "c"))
        vol = table["v"].astype(np.float64)[order]
        ids, starts, counts = np.unique(coin, return_index=True, return_counts=True)
        for cid, start, count in zip(ids.tolist(), starts.tolist(), counts.tolist(), strict=True):
            if count < HISTORY:
                continue
            lo, hi = start + count - HISTORY, start + count
            v = float(vol[hi - 1])
            last = _PG_EPOCH + timedelta(microseconds=int(t[hi - 1]))
            rows.append((cid, last, None if math.isnan(v) else v, high[lo:hi], low[lo:hi], close[lo:hi]))
            complete.add(cid)
    rest = [cid for cid in active if cid not in complete]
    if rest:
        with psycopg.Cursor(raw) as cur:
            cur.execute(_LATERAL_SQL, {**args, "ids": rest}, binary=True)
            rows += cur.fetchall()
    rows.sort(key=lambda row: row[0])  # upserts lock in coin order
    return rows


def latest_indicators_refresh(
    *, timeframe: str, coin_ids: list[int] | None = None, now: datetime | None = None
) -> RefreshResult:
    """Recompute the latest-indicator rows of ``timeframe`` (all active coins, or ``coin_ids``).
    ``now``: the time of the refresh (default: the clock); only where the window read starts."""
    if timeframe not in TIMEFRAME_DELTA:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    began = time.monotonic()
    now = now or timezone.now()
    rows = _read(timeframe, coin_ids, now)
    t_read = time.monotonic()
    out: list[tuple] = []
    read = 0
    for coin_id, last, vol24, high, low, close in rows:
        h = np.asarray(high, dtype=np.float64)
        lo = np.asarray(low, dtype=np.float64)
        c = np.asarray(close, dtype=np.float64)
        read += len(c)
        values = compute_latest(timeframe, h, lo, c, vol24)
        out.append((coin_id, last, *(values[col] for col in _COLUMNS)))
    t_compute = time.monotonic()
    _write(timeframe, out, now, coin_ids)
    caching.screener_changed(timeframe)
    done = time.monotonic()
    parts = {"read": t_read - began, "compute": t_compute - t_read, "write": done - t_compute}
    result = RefreshResult(timeframe, len(out), read, done - began, parts)
    logger.info("latest indicators %s: %d coins from %d candles in %.2fs", timeframe, result.coins,
                result.rows_read, result.seconds)  # fmt: skip
    return result


@transaction.atomic
def _write(timeframe: str, rows: list[tuple], now, coin_ids: list[int] | None) -> None:
    cols = ("coin_id", "time", *_COLUMNS)
    with connection.cursor() as cur:
        if rows:
            arrays = list(zip(*rows, strict=True))
            types = ["int8[]", "timestamptz[]"] + ["float8[]"] * len(_COLUMNS)
            unnest = ", ".join(f"%s::{t}" for t in types)
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*cols[1:], "computed_at"))
            cur.execute(
                f"INSERT INTO marketdata_latestindicator (timeframe, computed_at, {', '.join(cols)}) "  # noqa: S608
                f"SELECT %s, %s, * FROM unnest({unnest}) "
                f"ON CONFLICT (timeframe, coin_id) DO UPDATE SET {updates}",
                [timeframe, now, *[list(a) for a in arrays]],
            )
        # Rows of coins that are no longer active (or lost their history) go away.
        keep = [r[0] for r in rows]
        if coin_ids is None:
            cur.execute(
                "DELETE FROM marketdata_latestindicator WHERE timeframe = %s AND NOT coin_id = ANY(%s)",
                [timeframe, keep],
            )
