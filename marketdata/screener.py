"""The screener: a precomputed table of the latest indicators of every coin (filtered by
:func:`marketdata.selectors.screener_page`); :data:`FIELDS` names its columns.

:func:`latest_indicators_refresh` recomputes, for one timeframe, the indicators of the newest
CLOSED candle of every active coin with the fixed parameters in :data:`SCREENER_PARAMS`, writes
them to ``marketdata_latestindicator`` (one upsert) and bumps the screener's cache version. It is a
plain function; Celery beat runs it after each roll-up (ingestion wraps it in a task).

History used: the last :data:`HISTORY` closed candles of each series (one binary COPY of the
window of the last HISTORY buckets for all coins, and one LATERAL index scan per coin only for the
coins with gaps in that window, see :func:`_read`). For the windowed indicators that is exact.
For the EMA-type ones (ema, rsi, macd, atr) the
weight left on anything older than ``HISTORY`` candles is ``(1 - k)^HISTORY`` — for the screener's
periods (slowest: Wilder 14, k = 1/14) below 1e-19 at 600 candles, under double precision — so the
values equal the full-history values of ``/v1/coins/{id}/indicators/...`` to floating-point rounding.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
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


#: One candle as the read sends it: high, low, close, volume_24h as big-endian float8 (float8send).
_RECORD = np.dtype([("h", ">f8"), ("l", ">f8"), ("c", ">f8"), ("v", ">f8")])
_RECORDS = (
    "string_agg(float8send(high) || float8send(low) || float8send(close)"
    " || float8send(coalesce(volume_24h, 'NaN')), ''::bytea ORDER BY bucket_start)"
)

_WINDOW_SQL = f"""
SELECT x.coin_id, max(x.bucket_start), count(*), {_RECORDS}
FROM marketdata_candle x JOIN marketdata_coin c ON c.id = x.coin_id AND c.active
WHERE x.timeframe = %(tf)s AND x.closed AND x.bucket_start >= %(since)s {{coin_filter}}
GROUP BY x.coin_id
"""  # noqa: S608 - constant pieces; every value is a parameter

_LATERAL_SQL = f"""
SELECT c.id, k.last, k.n, k.records
FROM marketdata_coin c
CROSS JOIN LATERAL (
    SELECT max(bucket_start) AS last, count(*) AS n, {_RECORDS} AS records
    FROM (SELECT bucket_start, high, low, close, volume_24h FROM marketdata_candle x
          WHERE x.coin_id = c.id AND x.timeframe = %(tf)s AND x.closed
          ORDER BY x.bucket_start DESC LIMIT %(history)s) w
) k
WHERE c.active AND k.last IS NOT NULL AND c.id = ANY(%(ids)s)
"""  # noqa: S608 - constant pieces; every value is a parameter


def _series(records: bytes) -> tuple[float | None, np.ndarray, np.ndarray, np.ndarray]:
    """volume_24h of the newest candle and the high/low/close arrays of the last HISTORY candles."""
    table = np.frombuffer(records, dtype=_RECORD)[-HISTORY:]
    vol = float(table["v"][-1])
    high, low, close = (np.ascontiguousarray(table[k], dtype=np.float64) for k in ("h", "l", "c"))
    return (None if math.isnan(vol) else vol), high, low, close


def _read(timeframe: str, coin_ids: list[int] | None, now: datetime) -> list[tuple]:
    """(coin_id, last bucket_start, volume_24h, high, low, close) per active coin, with its last
    HISTORY closed candles as float64 arrays, oldest first.

    Most coins have a candle in every bucket: one query over the closed candles of the last
    HISTORY + WINDOW_SLACK buckets (partition-pruned) gives them all, one row per coin whose
    candles arrive as one ``bytea`` of packed doubles (``float8send``) that numpy reads without a
    Python object per value. Coins with fewer candles in that window (gaps, a young or a stale
    coin) are read again, their last HISTORY candles whatever their age (one LATERAL index scan
    per coin), so every coin gets exactly "its last HISTORY closed candles".
    """
    connection.ensure_connection()
    since = now - TIMEFRAME_DELTA[timeframe] * (HISTORY + WINDOW_SLACK)
    coin_filter = "AND x.coin_id = ANY(%(ids)s)" if coin_ids is not None else ""
    args = {"tf": timeframe, "since": since, "ids": coin_ids, "history": HISTORY}
    rows: list[tuple] = []
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(_WINDOW_SQL.format(coin_filter=coin_filter), args, binary=True)
        complete = set()
        for coin_id, last, count, records in cur.fetchall():
            if count >= HISTORY:
                rows.append((coin_id, last, *_series(records)))
                complete.add(coin_id)
        only = " AND id = ANY(%(ids)s)" if coin_ids is not None else ""
        cur.execute(f"SELECT id FROM marketdata_coin WHERE active{only}", args)  # noqa: S608 - constant
        rest = [row[0] for row in cur.fetchall() if row[0] not in complete]
        if rest:
            cur.execute(_LATERAL_SQL, {**args, "ids": rest}, binary=True)
            rows += [(coin_id, last, *_series(records)) for coin_id, last, _, records in cur.fetchall()]
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
        read += len(close)
        values = compute_latest(timeframe, high, low, close, vol24)
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
