"""CoinGecko API client: keys, a shared Redis rate budget, retries, counters and typed parsing.

Public API::

    from ingestion.coingecko import CoinGeckoClient
    client = CoinGeckoClient.from_settings()            # COINGECKO_* settings, redis_access "ingestion"
    result = client.coins_markets_all()                 # ParseResult[MarketRecord]: .records, .rejects
    client.metrics.snapshot()                           # calls, retries, rate_limited, failures, ...
"""

from .client import DEMO_BASE_URL, PRO_BASE_URL, CoinGeckoClient, KeyRing, RetryPolicy, key_fingerprint
from .errors import (
    BudgetTimeout,
    CoinGeckoAuthError,
    CoinGeckoBadRequest,
    CoinGeckoError,
    CoinGeckoHTTPError,
    CoinGeckoNotFound,
    CoinGeckoPayloadError,
    CoinGeckoPlanError,
    CoinGeckoRateLimited,
    CoinGeckoServerError,
    CoinGeckoShapeError,
    CoinGeckoTransportError,
    NoUsableKeyError,
)
from .metrics import ClientMetrics
from .parsing import (
    parse_coins_list,
    parse_coins_markets,
    parse_error_body,
    parse_exchange_rates,
    parse_global,
    parse_market_chart,
    parse_ohlc,
    parse_ping,
    parse_simple_price,
)
from .ratelimit import RateBudget
from .records import (
    ChartPoint,
    CoinListItem,
    ExchangeRate,
    GlobalMarket,
    MarketRecord,
    OHLCRecord,
    ParseResult,
    Reject,
    SimplePrice,
    ohlc_bucket_start,
    ohlc_candle_seconds,
)

__all__ = [
    "DEMO_BASE_URL",
    "PRO_BASE_URL",
    "BudgetTimeout",
    "ChartPoint",
    "ClientMetrics",
    "CoinGeckoAuthError",
    "CoinGeckoBadRequest",
    "CoinGeckoClient",
    "CoinGeckoError",
    "CoinGeckoHTTPError",
    "CoinGeckoNotFound",
    "CoinGeckoPayloadError",
    "CoinGeckoPlanError",
    "CoinGeckoRateLimited",
    "CoinGeckoServerError",
    "CoinGeckoShapeError",
    "CoinGeckoTransportError",
    "CoinListItem",
    "ExchangeRate",
    "GlobalMarket",
    "KeyRing",
    "MarketRecord",
    "NoUsableKeyError",
    "OHLCRecord",
    "ParseResult",
    "RateBudget",
    "Reject",
    "RetryPolicy",
    "SimplePrice",
    "key_fingerprint",
    "ohlc_bucket_start",
    "ohlc_candle_seconds",
    "parse_coins_list",
    "parse_coins_markets",
    "parse_error_body",
    "parse_exchange_rates",
    "parse_global",
    "parse_market_chart",
    "parse_ohlc",
    "parse_ping",
    "parse_simple_price",
]
