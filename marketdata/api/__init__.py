"""The public market data API v1 (``/v1/coins``, ``/v1/prices``, candles, indicators, …)."""
