"""What an alert can watch (docs/alerts.md, "Conditions"): the condition object of the API and the
value each kind compares with its level."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

#: change alerts: the window the % change is measured over.
WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "24h": timedelta(hours=24),
}

#: indicator alerts: name -> (marketdata.indicators name, output). Parameters are the screener's
#: (marketdata.screener.SCREENER_PARAMS: RSI 14, MACD 12/26/9), computed on closed candles.
INDICATORS: dict[str, tuple[str, str]] = {
    "rsi": ("rsi", "value"),
    "macd": ("macd", "macd"),
    # the MACD line crossing its signal line = the histogram (macd - signal) crossing 0
    "macd_signal_cross": ("macd", "histogram"),
}
#: indicators whose level is fixed (the API refuses another one).
FIXED_LEVEL: dict[str, float] = {"macd_signal_cross": 0.0}

#: closed candles read per series for indicator alerts. The EMA-type indicators keep a weight
#: (1 - k)^n of anything older than n candles: at 300 candles below 1e-9 for RSI(14) and MACD(12,26,9)
#: (the API's full warm-up goes to 2^-60, docs/indicators.md) - far below any level a customer sets.
INDICATOR_HISTORY = 300


def condition_of(alert: Any) -> dict[str, Any]:
    """The API's condition object of an alert (model instance or row with the same attributes)."""
    out: dict[str, Any] = {"type": alert.kind, "direction": alert.direction, "level": alert.level}
    if alert.kind == "change":
        out["window"] = alert.window
    elif alert.kind == "indicator":
        out["indicator"] = alert.indicator
        out["timeframe"] = alert.timeframe
    return out


def side_of(value: float, level: float, previous: str) -> str:
    """Which side of ``level`` the value is on; exactly on the level keeps the previous side."""
    if value > level:
        return "above"
    if value < level:
        return "below"
    return previous
