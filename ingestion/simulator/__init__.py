"""A faithful CoinGecko API simulator: deterministic ground truth + a plain WSGI app (no Django).

Public API::

    from ingestion.simulator import Simulator, SimulatorConfig, FaultConfig, SimClock, ManualClock
    sim = Simulator(SimulatorConfig(coins=2000, seed=42), clock=ManualClock("2026-01-01T00:00:00Z"))
    sim.tick_at_or_before("bitcoin", t)       # Tick(coin_id, index, time_ms, price, market_cap, total_volume)
    sim.ticks_between("bitcoin", start, end)  # every tick in [start, end]
    sim.markets_at(t)                         # what /coins/markets shows at t (no faults), rank order
    httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://sim/api/v3")
    with SimulatorServer(sim) as server: ...  # real HTTP on a loopback port; server.url

Run as a server: ``python -m ingestion.simulator --help``.
"""

from .app import Simulator
from .clock import ManualClock, SimClock
from .config import FaultConfig, SimulatorConfig
from .core import MarketState, Tick, iso_ms, ms_to_datetime, to_ms
from .server import SimulatorServer

__all__ = [
    "FaultConfig",
    "ManualClock",
    "MarketState",
    "SimClock",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "Tick",
    "iso_ms",
    "ms_to_datetime",
    "to_ms",
]
