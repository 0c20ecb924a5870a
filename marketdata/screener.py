"""The screener: a precomputed table of the latest indicators of every coin (filtered by
:func:`marketdata.selectors.screener_page`); :data:`FIELDS` names its columns.

:func:`latest_indicators_refresh` recomputes, for one timeframe, the indicators of the newest
CLOSED candle of every active coin with the fixed parameters in :data:`SCREENER_PARAMS`, writes
them to ``marketdata_latestindicator`` (one upsert) and bumps the screener's cache version. It is a
plain function; Celery beat runs it after each roll-up (ingestion wraps it in a task).

History used: the last :data:`HISTORY` closed candles of each series (one LATERAL index scan per
coin). For the windowed indicators that is exact. For the EMA-type ones (ema, rsi, macd, atr) the
weight left on anything older than ``HISTORY`` candles is ``(1 - k)^HISTORY`` — for the screener's
periods (slowest: Wilder 14, k = 1/14) below 1e-19 at 600 candles, under double precision — so the
values equal the full-history values of ``/v1/coins/{id}/indicators/...`` to floating-point rounding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.utils import timezone

from marketdata import indicators
from marketdata.api import caching

logger = logging.getLogger(__name__)

HISTORY = 600
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


def compute_latest(timeframe: str, high: np.ndarray, low: np.ndarray, close: np.ndarray, vol24) -> dict:
    """The screener fields for the last element of one series (oldest → newest arrays)."""
    series = {"high": high, "low": low, "close": close}

    def last(name: str, output: str = "value") -> float | None:
        values = indicators.compute(name, params=SCREENER_PARAMS[name], timeframe=timeframe, series=series)
        value = values[output][-1]
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


_READ_SQL = """
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
WHERE c.active AND k.last IS NOT NULL {coin_filter}
ORDER BY c.id
"""


def _read(timeframe: str, coin_ids: list[int] | None) -> list[tuple]:
    """One row per coin with its last HISTORY closed candles as float8 arrays (1 query).

    A plain psycopg cursor with binary results: the arrays arrive as packed doubles, ~5x faster than
    parsing text (this is a bulk job, not a request path).
    """
    coin_filter = "AND c.id = ANY(%(ids)s)" if coin_ids is not None else ""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cur:
        cur.execute(
            _READ_SQL.format(coin_filter=coin_filter),
            {"tf": timeframe, "history": HISTORY, "ids": coin_ids},
            binary=True,
        )
        return cur.fetchall()


def latest_indicators_refresh(*, timeframe: str, coin_ids: list[int] | None = None) -> RefreshResult:
    """Recompute the latest-indicator rows of ``timeframe`` (all active coins, or ``coin_ids``)."""
    if timeframe not in indicators.PERIODS_PER_YEAR:
        raise ValueError(f"unknown timeframe {timeframe!r}")
    began = time.monotonic()
    rows = _read(timeframe, coin_ids)
    now = timezone.now()
    out: list[tuple] = []
    read = 0
    for coin_id, last, vol24, high, low, close in rows:
        h = np.asarray(high, dtype=np.float64)
        lo = np.asarray(low, dtype=np.float64)
        c = np.asarray(close, dtype=np.float64)
        read += len(c)
        values = compute_latest(timeframe, h, lo, c, vol24)
        out.append((coin_id, last, *(values[col] for col in _COLUMNS)))
    _write(timeframe, out, now, coin_ids)
    caching.screener_changed(timeframe)
    result = RefreshResult(timeframe, len(out), read, time.monotonic() - began)
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
