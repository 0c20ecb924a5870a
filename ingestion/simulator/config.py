"""Simulator and fault configuration (plain dataclasses: no Django)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class FaultConfig:
    """Fault injection. Every decision is a hash of ``seed`` and the request number (request-level
    faults) or of (seed, coin, tick/point time) (record-level faults), so a run is reproducible.
    Change at run time with ``Simulator.set_faults(...)`` or ``POST /_sim/faults``."""

    seed: int = 0
    error_rate: float = 0.0  # share of requests answered with one of error_statuses
    error_statuses: tuple[int, ...] = (429, 500, 502, 503)
    latency: float = 0.0  # seconds added to every answer
    latency_jitter: float = 0.0  # plus up to this many seconds, deterministic per request
    timeout_rate: float = 0.0  # share of requests that hang (then answer 504 / raise)
    timeout_seconds: float = 30.0  # how long a "timeout" request hangs in server mode
    timeout_mode: str = "sleep"  # "sleep" (real server) or "raise" (in-process: raise httpx.ReadTimeout)
    truncate_rate: float = 0.0  # share of 200 answers whose JSON body is cut short
    malformed_rate: float = 0.0  # share of records/points corrupted (null, NaN, negative, text...)
    gap_rate: float = 0.0  # share of chart points / OHLC candles left out
    spike_rate: float = 0.0  # share of prices multiplied by spike_factor (outliers)
    spike_factor: float = 25.0
    stale_rate: float = 0.0  # share of /coins/markets records showing an old tick
    stale_seconds: float = 900.0  # how old a stale record is

    def update(self, **changes) -> None:
        names = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in names:
                raise ValueError(f"unknown fault setting {key!r}")
            if key == "error_statuses":
                value = tuple(int(v) for v in value)
            setattr(self, key, value)


@dataclass
class SimulatorConfig:
    coins: int = 2000
    seed: int = 42
    plan: str = "pro"  # which host is simulated: "pro" (x-cg-pro-api-key) or "demo" (x-cg-demo-api-key)
    api_keys: tuple[str, ...] = ()  # accepted keys; empty = any non-empty key is accepted
    require_key: bool = True  # pro host always needs a key; demo host allows keyless calls if False
    rate_limit_per_min: int = 0  # calls per window per key (0 = unlimited)
    rate_limit_window: float = 60.0  # seconds (tests use a short window)
    retry_after: int | None = None  # fixed retry-after seconds; None = seconds until the window resets
    max_url_length: int = 8192  # longer request targets get 414 URI Too Long
    enterprise: bool = False  # allow interval=5m/hourly on market_chart
    demo_history_days: int = 365  # demo keys asking for older data get error 10012
    ohlc_include_partial: bool = True  # the last (still open) candle is included, close time in future
    range_5m_anytime: bool = False  # market_chart/range: 5-minute points for any 1-day range, not just recent
    tick_period: tuple[float, float] = (20.0, 60.0)  # seconds between a coin's upstream refreshes
    # seconds between refreshes of the head of the universe (the real top 100 of the 2023 sample, the
    # large caps); None = tick_period. Upstream refreshes large caps continuously: (1, 3) models that.
    head_tick_period: tuple[float, float] | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
