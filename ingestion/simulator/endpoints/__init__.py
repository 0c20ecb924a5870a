"""The simulated ``/api/v3`` endpoints, one module per family; ``app.Simulator`` routes to them.

- ``meta``: ``/ping``, ``/key``
- ``coins``: ``/coins/list``
- ``markets``: ``/coins/markets`` (and the fault-free records behind ``Simulator.markets_at``)
- ``simple``: ``/simple/price``, ``/simple/supported_vs_currencies``
- ``charts``: ``/coins/{id}/market_chart``, ``/coins/{id}/market_chart/range``
- ``ohlc``: ``/coins/{id}/ohlc``, ``/coins/{id}/ohlc/range``
- ``reference``: ``/exchange_rates``, ``/global``

Each takes the ``state.SimState`` and the parsed query parameters and returns the JSON body, or
raises a ``protocol.Reply`` (an error).
"""
