"""``python -m ingestion.simulator --host 127.0.0.1 --port 8765 --coins 2000 --seed 42 [faults...]``"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime

from .app import Simulator
from .clock import SimClock
from .config import FaultConfig, SimulatorConfig
from .server import make_http_server


def _period(value: str) -> tuple[float, float] | None:
    if not value:
        return None
    lo, hi = (float(v) for v in value.split(","))
    return (lo, hi)


def _time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingestion.simulator",
        description="CoinGecko API simulator: /api/v3/{ping,coins/list,coins/markets,simple/price,"
        "coins/{id}/market_chart[/range],coins/{id}/ohlc[/range]} with deterministic prices, a per-key "
        "rate limit and fault injection. Simulator-only control endpoints live under /_sim/ "
        "(GET /_sim/state, GET|POST /_sim/clock, GET|POST /_sim/faults, POST /_sim/force, "
        "POST /_sim/keys/revoke, GET /_sim/truth/tick?coin=ID&t=EPOCH).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("server and universe")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8765)
    g.add_argument("--coins", type=int, default=2000, help="universe size, 1..20000")
    g.add_argument("--seed", type=int, default=42, help="price-path seed: same seed + time = same values")
    g.add_argument("--plan", choices=["pro", "demo"], default="pro", help="which host to imitate")
    g.add_argument("--keys", default="", help="comma-separated accepted API keys (empty: any key)")
    g.add_argument("--keyless", action="store_true", help="demo plan: allow calls without a key")
    g.add_argument("--enterprise", action="store_true", help="allow interval=5m/hourly on market_chart")
    g.add_argument("--max-url-length", type=int, default=8192, help="longer request targets get 414")
    g.add_argument("--no-partial-candle", action="store_true", help="omit the still-open last OHLC candle")
    g.add_argument("--range-5m-anytime", action="store_true", help="5-minute points for any 1-day range")
    g.add_argument(
        "--head-tick-period",
        default="",
        help="LO,HI seconds between upstream refreshes of the head (the real top 100); default: as the rest",
    )
    g = p.add_argument_group("clock")
    g.add_argument(
        "--start", type=_time, default=None, help="simulated start time (epoch s or ISO 8601); default now"
    )
    g.add_argument("--offset", type=float, default=0.0, help="seconds added to the start time")
    g.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    g = p.add_argument_group("rate limit")
    g.add_argument("--rate-limit", type=int, default=0, help="calls per window per key (0 = unlimited)")
    g.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds")
    g.add_argument("--retry-after", type=int, default=None, help="fixed retry-after seconds on 429")
    g = p.add_argument_group("faults (shares are 0..1; decisions are deterministic per --fault-seed)")
    g.add_argument("--fault-seed", type=int, default=0)
    g.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with an error")
    g.add_argument("--error-statuses", default="429,500,502,503", help="statuses used by --error-rate")
    g.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    g.add_argument("--latency-jitter", type=float, default=0.0, help="plus up to this many seconds")
    g.add_argument("--timeout-rate", type=float, default=0.0, help="share of requests that hang")
    g.add_argument("--timeout-seconds", type=float, default=30.0, help="how long they hang")
    g.add_argument("--truncate-rate", type=float, default=0.0, help="share of 200 bodies cut short")
    g.add_argument("--malformed-rate", type=float, default=0.0, help="share of records/points corrupted")
    g.add_argument("--gap-rate", type=float, default=0.0, help="share of chart points/candles missing")
    g.add_argument("--spike-rate", type=float, default=0.0, help="share of prices turned into outliers")
    g.add_argument("--spike-factor", type=float, default=25.0)
    g.add_argument("--stale-rate", type=float, default=0.0, help="share of market records with an old tick")
    g.add_argument("--stale-seconds", type=float, default=900.0)
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    faults = FaultConfig(
        seed=args.fault_seed,
        error_rate=args.error_rate,
        error_statuses=tuple(int(s) for s in args.error_statuses.split(",") if s.strip()),
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        timeout_rate=args.timeout_rate,
        timeout_seconds=args.timeout_seconds,
        truncate_rate=args.truncate_rate,
        malformed_rate=args.malformed_rate,
        gap_rate=args.gap_rate,
        spike_rate=args.spike_rate,
        spike_factor=args.spike_factor,
        stale_rate=args.stale_rate,
        stale_seconds=args.stale_seconds,
    )
    return SimulatorConfig(
        coins=args.coins,
        seed=args.seed,
        plan=args.plan,
        api_keys=tuple(k.strip() for k in args.keys.split(",") if k.strip()),
        require_key=not args.keyless,
        rate_limit_per_min=args.rate_limit,
        rate_limit_window=args.rate_window,
        retry_after=args.retry_after,
        max_url_length=args.max_url_length,
        enterprise=args.enterprise,
        ohlc_include_partial=not args.no_partial_candle,
        range_5m_anytime=args.range_5m_anytime,
        head_tick_period=_period(args.head_tick_period),
        faults=faults,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    start = (args.start if args.start is not None else time.time()) + args.offset
    sim = Simulator(config_from_args(args), clock=SimClock(start=start, speed=args.speed))
    httpd = make_http_server(sim, args.host, args.port)
    host, port = httpd.server_address[:2]
    if isinstance(host, bytes | bytearray):  # typeshed allows it; a TCP server's host is already str
        host = host.decode()
    print(
        f"CoinGecko simulator: http://{host}:{port}/api/v3  coins={args.coins} seed={args.seed}", flush=True
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
