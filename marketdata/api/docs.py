"""OpenAPI pieces shared by the market data views: parameters, response components, examples.

Everything a generated client needs is stated as schema keywords, built from the same constants the
parsers in :mod:`marketdata.api.params` enforce: ranges (``minimum``/``maximum``), required and
non-empty parameters (``minLength``), enums with readable member names (``x-enum-varnames``, read by
openapi-python-client and openapi-generator), and every response property with its type,
nullability and an example (``Example*`` fields below).
"""

from __future__ import annotations

from typing import Any, Final

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from apiplatform.schema import PROBLEM_CONTENT_TYPE, Problem, problem_response
from marketdata import indicators, screener, selectors
from marketdata.api import params
from marketdata.models import TIMEFRAMES

Q: Final = OpenApiParameter.QUERY
PROBLEM_JSON = PROBLEM_CONTENT_TYPE

# --- readable enum member names ------------------------------------------------------------------
_UNITS = {"m": "MINUTE", "h": "HOUR", "d": "DAY", "w": "WEEK"}
_NUMBERS = {1: "ONE", 4: "FOUR", 5: "FIVE", 15: "FIFTEEN", 30: "THIRTY"}


def timeframe_varname(tf: str) -> str:
    """``1h`` → ``ONE_HOUR``, ``15m`` → ``FIFTEEN_MINUTES``."""
    n, unit = int(tf[:-1]), _UNITS[tf[-1]]
    return f"{_NUMBERS.get(n, f'N{n}')}_{unit}{'S' if n != 1 else ''}"


def varname(value: str) -> str:
    """``-volume_24h`` → ``VOLUME_24H_DESC``, ``market_cap`` → ``MARKET_CAP``."""
    if value.startswith("-"):
        return value[1:].upper() + "_DESC"
    return value.upper()


def enum_schema(values: list[str], *, default: str | None = None, names: list[str] | None = None) -> dict:
    schema: dict[str, Any] = {
        "type": "string",
        "enum": list(values),
        "x-enum-varnames": names or [varname(v) for v in values],
    }
    if default is not None:
        schema["default"] = default
    return schema


TIMEFRAME_SCHEMA = enum_schema(list(TIMEFRAMES), names=[timeframe_varname(t) for t in TIMEFRAMES])

# --- problems ------------------------------------------------------------------------------------
_BAD_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/validation-error",
    "title": "Invalid request parameters",
    "status": 400,
    "detail": "limit: 6000 is out of range: must be between 1 and 5000",
    "instance": "/v1/coins/bitcoin/candles",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
    "errors": [{"parameter": "limit", "detail": "6000 is out of range: must be between 1 and 5000"}],
}
_NOT_FOUND_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/not-found",
    "title": "Not found",
    "status": 404,
    "detail": "No coin with id 'nope'.",
    "instance": "/v1/coins/nope",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
}
_NOT_ACCEPTABLE_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/not-acceptable",
    "title": "Not acceptable",
    "status": 406,
    "detail": "Could not satisfy the request Accept header.",
    "instance": "/v1/prices",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
}
_UNAUTH_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/not-authenticated",
    "title": "Authentication required",
    "status": 401,
    "detail": "Send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    "instance": "/v1/prices",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
}

problem = problem_response


_UNAVAILABLE_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/service-unavailable",
    "title": "Service unavailable",
    "status": 503,
    "detail": "No eur rate is stored yet (exchange rates are fetched every 5 minutes); retry shortly "
    "or ask in usd.",
    "instance": "/v1/prices",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
}


def errors(
    *, not_found: bool = False, not_modified: bool = False, unavailable: bool = False
) -> dict[int | tuple[int, str], OpenApiResponse]:
    """The error answers of a market data operation (403 and 429 are added by the gateway's schema
    class), every one ``application/problem+json``; 304 when the view honours ``If-None-Match``."""
    out: dict[int | tuple[int, str], OpenApiResponse] = {
        (400, PROBLEM_JSON): problem(
            "A parameter is invalid (`validation-error`; `errors` names it).", _BAD_EXAMPLE
        ),
        (401, PROBLEM_JSON): problem(
            "The API key is missing, malformed, unknown, revoked or expired (`not-authenticated`).",
            _UNAUTH_EXAMPLE,
        ),
        (406, PROBLEM_JSON): problem(
            "The Accept header asks for a media type this operation cannot serve (`not-acceptable`).",
            _NOT_ACCEPTABLE_EXAMPLE,
        ),
    }
    if not_found:
        out[(404, PROBLEM_JSON)] = problem("No coin with this id (`not-found`).", _NOT_FOUND_EXAMPLE)
    if not_modified:
        out[304] = OpenApiResponse(description="Not modified: your `If-None-Match` ETag is current.")
    if unavailable:
        out[(503, PROBLEM_JSON)] = problem(
            "The data this answer needs is not stored yet, e.g. the exchange rate of `vs` right after a "
            "first start (`service-unavailable`, with `Retry-After`).",
            _UNAVAILABLE_EXAMPLE,
        )
    return out


# --- parameters ----------------------------------------------------------------------------------
def param(name: str, schema: dict, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, schema, kwargs.pop("location", Q), description=description, **kwargs)


TIMEFRAME = param(
    "timeframe",
    {**TIMEFRAME_SCHEMA, "default": "1h"},
    "Candle width. Buckets are UTC: 4h buckets start at 00, 04, … 20 h; days at 00:00; weeks (`1w`) "
    "on Mondays 00:00. 1m may need a paid plan (403 `plan-upgrade-required`).",
)
TIME_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "integer",
            "minimum": 0,
            "maximum": params.MAX_UNIX_SECONDS,
            "description": "Unix time in whole seconds (a 13-digit millisecond value is refused).",
        },
        {"type": "string", "format": "date-time", "description": "ISO 8601 date-time; no offset = UTC."},
        {"type": "string", "format": "date", "description": "ISO 8601 date: its midnight UTC."},
    ]
}
_TIME_NOTE = (
    " ISO 8601 date-time (no offset = UTC), ISO date (midnight UTC) or unix seconds (whole seconds, "
    f"0 … {params.MAX_UNIX_SECONDS}; milliseconds are refused with a hint). Times before "
    f"{params.MIN_TIME:%Y-%m-%d} or after {params.MAX_TIME:%Y-%m-%d} are clamped to those bounds."
)
START = param(
    "start",
    TIME_SCHEMA,
    "Earliest bucket start, inclusive." + _TIME_NOTE,
    examples=[OpenApiExample("iso", value="2026-11-01T00:00:00Z"), OpenApiExample("unix", value=1793491200)],
)
END = param(
    "end",
    TIME_SCHEMA,
    "Bucket starts before this time (exclusive); an `end` at or before `start` is an empty range."
    + _TIME_NOTE,
    examples=[OpenApiExample("iso", value="2026-11-02T00:00:00Z")],
)
AT = param(
    "at",
    TIME_SCHEMA,
    "Rank at this past time; default (or a time in the future): now." + _TIME_NOTE,
)
ORDER = param(
    "order",
    enum_schema(["desc", "asc"], default="desc", names=["NEWEST_FIRST", "OLDEST_FIRST"]),
    "desc = newest first; asc = oldest first.",
)
CURSOR_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "^[A-Za-z0-9_-]+$"}
CURSOR = param(
    "cursor",
    CURSOR_SCHEMA,
    '`next_cursor` of the previous page (also in the `Link: <…>; rel="next"` header). Opaque: keep the '
    "other parameters unchanged while paging; a cursor this API did not issue (or issued for another "
    "order) is a 400 naming `cursor`.",
)
IF_NONE_MATCH = param(
    "If-None-Match",
    {"type": "string"},
    "An ETag from an earlier answer: 304 if unchanged.",
    location=OpenApiParameter.HEADER,
)
LIMIT_CANDLES = param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": params.MAX_CANDLES, "default": params.DEFAULT_CANDLES},
    f"Rows per page, 1 … {params.MAX_CANDLES}.",
)
FORMAT = param(
    "format",
    enum_schema(["json"], default="json"),
    "Deprecated: `format=csv` (or `Accept: text/csv`) still streams CSV here; use the `.csv` operation.",
)


def limit(default: int, maximum: int) -> OpenApiParameter:
    return param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        f"Rows per page, 1 … {maximum}.",
    )


OFFSET = param(
    "offset",
    {"type": "integer", "minimum": 0, "maximum": params.MAX_OFFSET},
    f"Deprecated alias of cursor paging: rows to skip (0 … {params.MAX_OFFSET}; after the cursor's "
    "position when `cursor` is given too). Follow `next_cursor` instead.",
    deprecated=True,
)
IDS = param(
    "ids",
    {
        "type": "array",
        "items": {"type": "string", "pattern": params.ID_PATTERN},
        "minItems": 1,
        "maxItems": params.MAX_IDS,
    },
    f"Coin ids (CoinGecko ids), comma-separated (`bitcoin,ethereum`), at most {params.MAX_IDS}; "
    "repeating the parameter (`ids=bitcoin&ids=ethereum`) works too.",
    style="form",
    explode=False,
    examples=[OpenApiExample("two", value=["bitcoin", "ethereum"])],
)
COIN_ID = OpenApiParameter(
    "coin_id",
    {"type": "string", "pattern": params.ID_PATTERN},
    OpenApiParameter.PATH,
    description="CoinGecko id.",
)
#: The parameters of every candle-range operation (candles, candles.csv, each indicator), in order.
CANDLE_RANGE = [COIN_ID, TIMEFRAME, START, END, LIMIT_CANDLES, ORDER, CURSOR]
TEXT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": params.MAX_Q, "pattern": "^[^\\u0000]+$"}

RESPONSE_HEADERS_DOC = (
    "Responses carry a strong `ETag` (send it back in `If-None-Match` for a 304) and `Cache-Control`: "
    f"`private, max-age={86400}` when every candle in the page is closed and the range has an `end` in "
    "the past, `private, max-age=10` otherwise."
)
PAGING_DOC = (
    'Cursor-paginated: follow `next_cursor` (also sent as `Link: <…>; rel="next"`); null on the last page.'
)
OFFSET_DOC = " `offset` is a deprecated alias kept for old clients (`next_offset` in the body)."


# --- response fields with examples ---------------------------------------------------------------
class _Example:
    """A serializer field carrying an ``example`` for its property in the OpenAPI document."""

    example: Any

    def __init__(self, *args: Any, example: Any = None, **kwargs: Any) -> None:
        self.example = example
        super().__init__(*args, **kwargs)


class ExampleFieldExtension(OpenApiSerializerFieldExtension):
    target_class = _Example
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if self.target.example is not None:
            schema["example"] = self.target.example
        return schema


class _Float(_Example, serializers.FloatField):
    pass


class _Int(_Example, serializers.IntegerField):
    pass


class _Str(_Example, serializers.CharField):
    pass


class _Bool(_Example, serializers.BooleanField):
    pass


class _DateTime(_Example, serializers.DateTimeField):
    pass


class _Date(_Example, serializers.DateField):
    pass


def num(
    example: float, help_text: str = "", *, null: bool = True, required: bool = True
) -> serializers.Field:
    return _Float(example=example, allow_null=null, help_text=help_text or None, required=required)


def integer(
    example: int, help_text: str = "", *, null: bool = False, required: bool = True
) -> serializers.Field:
    return _Int(example=example, allow_null=null, help_text=help_text or None, required=required)


def string(
    example: str, help_text: str = "", *, null: bool = False, required: bool = True
) -> serializers.Field:
    return _Str(example=example, allow_null=null, help_text=help_text or None, required=required)


def boolean(example: bool, help_text: str = "") -> serializers.Field:
    return _Bool(example=example, help_text=help_text or None)


def when(
    example: str, help_text: str = "", *, null: bool = False, required: bool = True
) -> serializers.Field:
    return _DateTime(example=example, allow_null=null, help_text=help_text or None, required=required)


def _enum_field(component: str, schema: dict) -> type[_Str]:
    """A string field documented as the named enum component ``component``."""
    return extend_schema_field(schema, component_name=component)(type(component + "Field", (_Str,), {}))


TimeframeField = _enum_field("Timeframe", TIMEFRAME_SCHEMA)


def timeframe_field() -> serializers.Field:
    return TimeframeField(example="1h", help_text="Candle width.")


def next_cursor() -> serializers.Field:
    return _Str(
        example="WyJjMSIsIm1hcmtldHMiLFsibWFya2V0X2NhcCIsImRlc2MiXSxbMS4yZTEyLCJiaXRjb2luIl1d",
        allow_null=True,
        help_text="Cursor of the next page (pass it as `cursor`); null on the last page.",
    )


def next_offset() -> serializers.Field:
    return _Int(
        example=100,
        allow_null=True,
        help_text="Deprecated (offset paging): `offset` of the next page; null on the last page or when "
        "paging by cursor.",
    )


def coin_fields() -> dict[str, serializers.Field]:
    return {
        "id": string("bitcoin", "CoinGecko id."),
        "symbol": string("btc", "Ticker symbol, lower case."),
        "name": string("Bitcoin"),
        "active": boolean(True, "false once the coin left the upstream's list."),
        "first_seen": when("2026-01-01T00:00:00Z", "When the coin was first listed here."),
        "last_seen": when("2026-11-24T05:00:00Z", "Last time the upstream listed it."),
    }


_QUOTED = "In the quote currency (`vs`; USD by default)."


def detail_fields(*, required: bool = True) -> dict[str, serializers.Field]:
    """The snapshot's details (supply, FDV, all-time high/low, 1h/7d/30d change, logo)."""
    r = required
    return {
        "change_1h_pct": num(0.4, "Price change over 1h, % (of the quote-currency price).", required=r),
        "change_7d_pct": num(-3.1, "Price change over 7 days, %.", required=r),
        "change_30d_pct": num(12.5, "Price change over 30 days, %.", required=r),
        "circulating_supply": num(19.8e6, "Coins in circulation.", required=r),
        "total_supply": num(21e6, "Coins in existence (minus burnt).", required=r),
        "max_supply": num(21e6, "Most coins there will ever be; null = no cap or unknown.", required=r),
        "fully_diluted_valuation": num(
            1.92e12, "Price x max supply (else total supply). " + _QUOTED, required=r
        ),
        "ath": num(126080.0, "All-time high price. " + _QUOTED + " Null for btc/eth quotes.", required=r),
        "ath_change_pct": num(-27.6, "Current price against the all-time high, %.", required=r),
        "ath_date": when(
            "2025-10-06T18:57:42Z", "When the all-time high was reached.", null=True, required=r
        ),
        "atl": num(67.81, "All-time low price. " + _QUOTED + " Null for btc/eth quotes.", required=r),
        "atl_change_pct": num(134443.0, "Current price against the all-time low, %.", required=r),
        "atl_date": when("2013-07-06T00:00:00Z", "When the all-time low was reached.", null=True, required=r),
        "image_url": string(
            "https://assets.coingecko.com/coins/images/1/large/bitcoin.png",
            "The coin's logo (upstream URL).",
            null=True,
            required=r,
        ),
    }


def snapshot_fields() -> dict[str, serializers.Field]:
    return {
        "price": num(91234.5, _QUOTED),
        "market_cap": num(1.81e12, _QUOTED),
        "rank": integer(1, "Upstream market-cap rank.", null=True),
        "volume_24h": num(3.2e10, "Rolling 24h volume. " + _QUOTED),
        "high_24h": num(92000.0, _QUOTED),
        "low_24h": num(89000.0, _QUOTED),
        "change_24h_pct": num(1.8, "Price change over 24h, %."),
        "last_updated": when("2026-11-24T04:59:31Z", "Upstream's update time of the price.", null=True),
        **detail_fields(),
    }


def _serializer(
    name: str, fields: dict[str, serializers.Field], doc: str = ""
) -> type[serializers.Serializer]:
    return type(name, (serializers.Serializer,), {**fields, "__doc__": doc or name})


Coin = _serializer("Coin", coin_fields(), "A coin of the universe.")
CoinList = _serializer(
    "CoinList",
    {
        "data": Coin(many=True),
        "next_cursor": next_cursor(),
        "next_offset": next_offset(),
    },
    "A page of coins.",
)
Snapshot = _serializer("Snapshot", snapshot_fields(), "The latest market snapshot of a coin.")
Gap = _serializer(
    "Gap",
    {
        "start": when("2026-11-24T06:00:00Z", "First missing bucket."),
        "end": when("2026-11-24T08:00:00Z", "The bucket after the last missing one (exclusive)."),
        "buckets": integer(2, "Missing buckets in this gap."),
    },
    "A run of missing buckets.",
)
SeriesCoverage = _serializer(
    "SeriesCoverage",
    {
        "timeframe": timeframe_field(),
        "first": when("2026-08-26T00:00:00Z", "Bucket start of the oldest candle; null: none.", null=True),
        "last": when("2026-11-24T04:00:00Z", "Bucket start of the newest candle; null: none.", null=True),
        "count": integer(2189, "Candles stored."),
        "first_partial": _Bool(
            example=False,
            allow_null=True,
            help_text="Whether the oldest candle is `partial` (its bucket started before our first "
            "observation); null: no candle.",
        ),
        "missing_buckets": integer(3, "Buckets missing between `first` and `last` (in all gaps)."),
        "gaps_total": integer(2, "Gaps (runs of missing buckets) between `first` and `last`."),
        "gaps": Gap(
            many=True, help_text=f"The newest gaps, newest first (at most {selectors.COVERAGE_MAX_GAPS})."
        ),
        "gaps_checked_from": when(
            "2026-08-26T00:00:00Z",
            "Gaps are searched from this bucket on: `first`, unless the series holds more than "
            f"{selectors.COVERAGE_SCAN_BUCKETS:,} candles (then from its newest "
            f"{selectors.COVERAGE_SCAN_BUCKETS:,}).",
            null=True,
        ),
    },
    "What is stored for one timeframe of a coin.",
)
Coverage = _serializer(
    "Coverage",
    {
        "coin": string("bitcoin", "CoinGecko id."),
        "timeframes": SeriesCoverage(many=True, help_text="One entry per timeframe, shortest first."),
    },
    "How far back each timeframe of a coin goes, and its known gaps.",
)
CoinDetail = _serializer(
    "CoinDetail",
    {
        **coin_fields(),
        "market": Snapshot(allow_null=True, help_text="Latest market snapshot; null if none yet."),
        "coverage": SeriesCoverage(
            many=True,
            help_text="Per timeframe, shortest first: first and last candle, count and known gaps (as "
            "`GET /v1/coins/{coin_id}/coverage`).",
        ),
    },
    "One coin with its latest market snapshot and what candles are stored for it.",
)
Market = _serializer(
    "Market",
    {
        "id": string("bitcoin", "CoinGecko id."),
        "symbol": string("btc"),
        "name": string("Bitcoin"),
        **snapshot_fields(),
    },
    "A coin and its latest market snapshot.",
)
MarketList = _serializer(
    "MarketList",
    {
        "vs": string("usd", "The quote currency of the amounts."),
        "data": Market(many=True),
        "next_cursor": next_cursor(),
        "next_offset": next_offset(),
    },
    "A page of market snapshots.",
)
Price = _serializer(
    "Price",
    {
        "price": num(91234.5, _QUOTED),
        "market_cap": num(1.81e12, _QUOTED),
        "volume_24h": num(3.2e10, "Rolling 24h volume. " + _QUOTED),
        "change_24h_pct": num(1.8, "%."),
        "last_updated": when("2026-11-24T04:59:31Z", "Upstream's update time.", null=True),
        "rank": integer(1, "Upstream market-cap rank (`include=rank`).", null=True, required=False),
        "high_24h": num(92000.0, "`include=range_24h`. " + _QUOTED, required=False),
        "low_24h": num(89000.0, "`include=range_24h`. " + _QUOTED, required=False),
        **detail_fields(required=False),
    },
    "Latest price data of a coin: the five default fields, plus those of the `include` groups.",
)
Prices = _serializer(
    "Prices",
    {
        "vs": string("usd", "The quote currency of the amounts."),
        "data": serializers.DictField(child=Price(), help_text="Keyed by coin id."),
        "missing": serializers.ListField(
            child=string("nope"), help_text="Requested ids that are unknown or have no price yet."
        ),
    },
    "Latest prices keyed by coin id.",
)
Candle = _serializer(
    "Candle",
    {
        "time": when("2026-11-24T04:00:00Z", "Bucket start, ISO 8601 UTC."),
        "open": num(91000.0, null=False),
        "high": num(91500.0, null=False),
        "low": num(90800.0, null=False),
        "close": num(91234.5, null=False),
        "volume": num(1.2e9, "Traded inside the bucket; null where the source does not report it."),
        "volume_24h": num(3.2e10, "Upstream rolling 24h volume at the bucket's close."),
        "closed": boolean(True, "false for the current (still changing) bucket."),
        "filled": boolean(False, "No upstream value in the bucket: carried forward flat."),
        "samples": integer(
            57,
            "Upstream observations (price updates) the candle was built from; a roll-up sums its parts' "
            "(1m → 5m → … → 1w). Null for candles from upstream OHLC history or imports (or a roll-up "
            "with such a part); 0 for a `filled` minute.",
            null=True,
        ),
        "partial": boolean(
            False,
            "true when the bucket started before our first observation of the coin (e.g. the 13:00 hour "
            "of a coin first seen at 13:34): open/high/low cover only part of the bucket. A roll-up is "
            "partial when a part is, or when the coin's data starts inside it. History from upstream "
            "OHLC is full.",
        ),
    },
    "One OHLCV candle.",
)
CandleList = _serializer(
    "CandleList",
    {
        "coin": string("bitcoin", "CoinGecko id."),
        "timeframe": timeframe_field(),
        "data": Candle(many=True),
        "next_cursor": next_cursor(),
    },
    "A page of candles.",
)


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def indicator_series(spec: indicators.Indicator) -> type[serializers.Serializer]:
    """The response of one indicator: its parameters and outputs as declared properties."""
    t = _title(spec.name)
    point = _serializer(
        f"{t}Point",
        {
            "time": when("2026-11-24T03:00:00Z", "Bucket start of the candle."),
            **{o: num(61.3, "null during the warm-up.") for o in spec.outputs},
        },
        f"One {spec.name} value per candle.",
    )
    values: Any = _serializer(
        f"{t}Params",
        {
            p.name: integer(int(p.default), p.description)
            if p.integer
            else num(p.default, p.description, null=False)
            for p in spec.params
        },
        f"Parameters the {spec.name} values were computed with.",
    )
    return _serializer(
        f"{t}Series",
        {
            "coin": string("bitcoin", "CoinGecko id."),
            "timeframe": timeframe_field(),
            "indicator": _enum_field(f"{t}Name", enum_schema([spec.name]))(example=spec.name),
            "params": values()
            if spec.params
            else serializers.DictField(help_text=f"{spec.name} has no parameters: always {{}}."),
            "outputs": serializers.ListField(child=string(spec.outputs[0]), help_text="Output names."),
            "data": point(many=True),
            "next_cursor": next_cursor(),
        },
        f"{spec.title} series of one coin.",
    )


def indicator_parameters(spec: indicators.Indicator) -> list[OpenApiParameter]:
    """The query parameters of one indicator, each with its range and default as schema keywords."""
    out = []
    for p in spec.params:
        schema: dict[str, Any] = {
            "type": "integer" if p.integer else "number",
            "minimum": int(p.minimum) if p.integer else p.minimum,
            "maximum": int(p.maximum) if p.integer else p.maximum,
            "default": int(p.default) if p.integer else p.default,
        }
        if p.choices:
            schema["enum"] = [v for v, _ in p.choices]
            schema["x-enum-varnames"] = [label for _, label in p.choices]
            out.append(param(p.name, schema, p.description))
            continue
        out.append(param(p.name, schema, f"{p.description} Range {p.minimum:g} … {p.maximum:g}."))
    return out


Ranking = _serializer(
    "Ranking",
    {
        "rank": integer(1),
        "id": string("bitcoin", "CoinGecko id."),
        "symbol": string("btc"),
        "market_cap": num(1.81e12, "USD.", null=False),
        "share_pct": num(54.2, "Share of the total market cap of all ranked coins, %.", null=False),
        "rank_change_24h": integer(0, "Rank 24h earlier minus rank now (positive = moved up).", null=True),
        "rank_change_7d": integer(1, "As rank_change_24h, over 7 days.", null=True),
    },
    "A coin's place in the market-cap ranking.",
)
Rankings = _serializer(
    "Rankings",
    {
        "by": _enum_field("RankingBy", enum_schema(["market_cap"]))(example="market_cap"),
        "at": when("2026-11-20T00:00:00Z", "null = latest snapshots.", null=True),
        "total_market_cap": num(3.34e12, "USD, all ranked coins.", null=False),
        "coins": integer(2, "How many coins are ranked."),
        "data": Ranking(many=True),
        "next_cursor": next_cursor(),
        "next_offset": next_offset(),
    },
    "A page of the market-cap ranking.",
)
ScreenerRow = _serializer(
    "ScreenerRow",
    {
        "id": string("solana", "CoinGecko id."),
        "symbol": string("sol"),
        "name": string("Solana"),
        "time": when("2026-11-24T03:00:00Z", "Bucket start of the newest closed candle."),
        **{f: num(27.4, h) for f, h in screener.FIELDS.items()},
    },
    "The latest indicators of one coin.",
)
Screener = _serializer(
    "Screener",
    {
        "timeframe": timeframe_field(),
        "data": ScreenerRow(many=True),
        "next_cursor": next_cursor(),
        "next_offset": next_offset(),
    },
    "A page of screener matches.",
)
GLOBAL_INTERVAL_SCHEMA = enum_schema(["5m", "1h", "1d"], names=["FIVE_MINUTES", "ONE_HOUR", "ONE_DAY"])
GlobalMarket = _serializer(
    "GlobalMarket",
    {
        "time": when("2026-11-24T04:59:00Z", "Upstream's update time of these figures."),
        "total_market_cap": num(3.34e12, "USD, every coin the upstream tracks.", null=False),
        "total_volume": num(1.2e11, "Rolling 24h volume, USD.", null=False),
        "btc_dominance": num(57.1, "Bitcoin's share of the total market cap, %."),
        "eth_dominance": num(11.9, "Ethereum's share of the total market cap, %."),
        "active_coins": integer(17321, "Active cryptocurrencies upstream.", null=True),
        "markets": integer(1046, "Exchanges tracked upstream.", null=True),
        "market_cap_change_24h_pct": num(1.7, "Total market cap change over 24h, %."),
    },
    "The whole crypto market at one time.",
)
GlobalPoint = _serializer(
    "GlobalPoint",
    {
        "time": when("2026-11-24T04:00:00Z", "Bucket start."),
        "observed_at": when("2026-11-24T04:59:00Z", "Upstream time of the last snapshot in the bucket."),
        "total_market_cap": num(3.34e12, "USD.", null=False),
        "total_volume": num(1.2e11, "Rolling 24h volume, USD.", null=False),
        "btc_dominance": num(57.1, "%."),
        "eth_dominance": num(11.9, "%."),
        "active_coins": integer(17321, null=True),
    },
    "The global market at the end of one bucket.",
)
GlobalHistory = _serializer(
    "GlobalHistory",
    {
        "interval": _enum_field("GlobalInterval", GLOBAL_INTERVAL_SCHEMA)(example="1h"),
        "data": GlobalPoint(many=True),
    },
    "The global market over time, one point per bucket with data, oldest first.",
)


def vs_param(currencies: tuple[str, ...]) -> OpenApiParameter:
    return param(
        "vs",
        enum_schema(list(currencies), default="usd", names=[c.upper() for c in currencies]),
        "Quote currency of prices, market caps, volumes, FDV and ATH/ATL: `usd` (default), major fiat "
        "(converted with CoinGecko's exchange rates, refreshed every 5 minutes) or `btc`/`eth` (from our "
        "own bitcoin/ethereum prices; price changes then relative to that coin, ATH/ATL null). Another "
        "value is a 400 listing the supported ones.",
    )


IDS_REQUIRED = OpenApiParameter(
    "ids",
    IDS.type,
    Q,
    required=True,
    description=IDS.description,
    style="form",
    explode=False,
    examples=IDS.examples,
)


# --- reads over the stored candles: several coins, a day's close, market charts -------------------
CANDLE_IDS = OpenApiParameter(
    "ids",
    {
        "type": "array",
        "items": {"type": "string", "pattern": params.ID_PATTERN},
        "minItems": 1,
        "maxItems": params.MAX_CANDLE_IDS,
    },
    Q,
    required=True,
    description=f"Coin ids (CoinGecko ids), comma-separated (`bitcoin,ethereum`), at most "
    f"{params.MAX_CANDLE_IDS}; repeating the parameter works too. Rows come coin by coin in this order. "
    "Every id must exist (404 `not-found` listing the unknown ones in `missing`).",
    style="form",
    explode=False,
    examples=[OpenApiExample("two", value=["bitcoin", "ethereum"])],
)
#: The parameters of the multi-coin candle operations, in order.
MULTI_CANDLE_RANGE = [CANDLE_IDS, TIMEFRAME, START, END, LIMIT_CANDLES, ORDER, CURSOR]

CoinCandle = _serializer(
    "CoinCandle",
    {"coin": string("bitcoin", "CoinGecko id."), **Candle._declared_fields},
    "One OHLCV candle of one coin: the row of the single-coin candles with the coin id.",
)
MultiCandleList = _serializer(
    "MultiCandleList",
    {
        "timeframe": timeframe_field(),
        "ids": serializers.ListField(child=string("bitcoin"), help_text="The coins asked for, in row order."),
        "data": CoinCandle(many=True),
        "next_cursor": next_cursor(),
    },
    "A page of the candles of several coins.",
)


class UnknownCoinsProblem(Problem):
    """RFC 9457 problem details (see /problems/) naming the unknown coin ids of a multi-coin call."""

    missing = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="The ids of `ids` that are no coin."
    )


class NoDataProblem(Problem):
    """RFC 9457 problem details (see /problems/) with the dates that have data."""

    earliest_date = serializers.DateField(
        required=False, allow_null=True, help_text="no-data only: the first date with data (null: none)."
    )
    latest_date = serializers.DateField(
        required=False, allow_null=True, help_text="no-data only: the last date with data (null: none)."
    )


UNKNOWN_IDS_404 = OpenApiResponse(
    UnknownCoinsProblem,
    description="One or more ids are no coin (`not-found`; `missing` lists them).",
    examples=[
        OpenApiExample(
            "unknown",
            response_only=True,
            value={
                **_NOT_FOUND_EXAMPLE,
                "detail": "No coin with id 'nope'.",
                "instance": "/v1/candles",
                "missing": ["nope"],
            },
        )
    ],
)
NO_DATA_404 = OpenApiResponse(
    NoDataProblem,
    description="No coin with this id (`not-found`), or no data for the date (`no-data`, with "
    "`earliest_date` and `latest_date`).",
    examples=[
        OpenApiExample(
            "no data",
            response_only=True,
            value={
                "type": "http://127.0.0.1:8000/problems/no-data",
                "title": "No data for this date",
                "status": 404,
                "detail": "No data for bitcoin on 2013-01-01: data starts on 2013-04-28 "
                "(latest: 2026-11-24).",
                "instance": "/v1/coins/bitcoin/history",
                "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
                "earliest_date": "2013-04-28",
                "latest_date": "2026-11-24",
            },
        )
    ],
)

DATE = param(
    "date",
    {"type": "string", "format": "date"},
    "The UTC day, YYYY-MM-DD.",
    required=True,
    examples=[OpenApiExample("day", value="2026-11-20")],
)
History = _serializer(
    "History",
    {
        **{k: v for k, v in coin_fields().items() if k in ("id", "symbol", "name")},
        "date": _Date(example="2026-11-20", help_text="The UTC day asked for."),
        "price": num(91234.5, "Close, USD.", null=False),
        "market_cap": num(1.81e12, "USD, at the same time."),
        "volume_24h": num(3.2e10, "Rolling 24h volume, USD, at the same time."),
        "as_of": when("2026-11-21T00:00:00Z", "When these values hold: the day's end once it is over."),
        "timeframe": timeframe_field(),
        "closed": boolean(True, "false while the day (or its last candle) is still open."),
    },
    "A coin's price, market cap and 24h volume at the close of a UTC day.",
)

INTERVAL = param(
    "interval",
    enum_schema(
        ["auto", *TIMEFRAMES], default="auto", names=["AUTO", *[timeframe_varname(t) for t in TIMEFRAMES]]
    ),
    "Candle width of the points. `auto` (default): 5m for ranges up to 1 day, 1h up to 90 days, 1d "
    "beyond (coarser where the finer candles are past their retention). 1m may need a paid plan.",
)
CHART_START = param(
    "start",
    TIME_SCHEMA,
    "Earliest point time, inclusive; default: 1 day before `end`." + _TIME_NOTE,
    examples=[OpenApiExample("iso", value="2026-11-01T00:00:00Z")],
)
CHART_END = param(
    "end",
    TIME_SCHEMA,
    "Latest point time, inclusive; default: now (the open candle's latest values included)." + _TIME_NOTE,
    examples=[OpenApiExample("iso", value="2026-11-02T00:00:00Z")],
)
ChartPoint = _serializer(
    "ChartPoint",
    {
        "time": when(
            "2026-11-24T05:00:00Z", "When the values hold: the candle's end (the open one: its last update)."
        ),
        "price": num(91234.5, "Close, USD.", null=False),
        "market_cap": num(1.81e12, "USD."),
        "volume_24h": num(3.2e10, "Rolling 24h volume, USD."),
    },
    "Price, market cap and 24h volume at one time.",
)
MarketChart = _serializer(
    "MarketChart",
    {
        "coin": string("bitcoin", "CoinGecko id."),
        "interval": timeframe_field(),
        "start": when("2026-11-23T05:00:00Z", "The range's start (inclusive)."),
        "end": when("2026-11-24T05:00:00Z", "The range's end (inclusive); null: up to now.", null=True),
        "data": ChartPoint(many=True),
    },
    "Price, market cap and 24h volume series of one coin, oldest first.",
)
