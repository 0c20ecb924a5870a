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

from apiplatform.schema import PROBLEM_CONTENT_TYPE, problem_response
from marketdata import indicators, screener
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


def errors(
    *, not_found: bool = False, not_modified: bool = False
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
    return out


# --- parameters ----------------------------------------------------------------------------------
def param(name: str, schema: dict, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, schema, kwargs.pop("location", Q), description=description, **kwargs)


TIMEFRAME = param(
    "timeframe",
    {**TIMEFRAME_SCHEMA, "default": "1h"},
    "Candle width. 1m may need a paid plan (403 `plan-upgrade-required`).",
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


def num(example: float, help_text: str = "", *, null: bool = True) -> serializers.Field:
    return _Float(example=example, allow_null=null, help_text=help_text or None)


def integer(example: int, help_text: str = "", *, null: bool = False) -> serializers.Field:
    return _Int(example=example, allow_null=null, help_text=help_text or None)


def string(example: str, help_text: str = "", *, null: bool = False) -> serializers.Field:
    return _Str(example=example, allow_null=null, help_text=help_text or None)


def boolean(example: bool, help_text: str = "") -> serializers.Field:
    return _Bool(example=example, help_text=help_text or None)


def when(example: str, help_text: str = "", *, null: bool = False) -> serializers.Field:
    return _DateTime(example=example, allow_null=null, help_text=help_text or None)


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


def snapshot_fields() -> dict[str, serializers.Field]:
    return {
        "price": num(91234.5, "USD."),
        "market_cap": num(1.81e12, "USD."),
        "rank": integer(1, "Upstream market-cap rank.", null=True),
        "volume_24h": num(3.2e10, "Rolling 24h volume, USD."),
        "high_24h": num(92000.0, "USD."),
        "low_24h": num(89000.0, "USD."),
        "change_24h_pct": num(1.8, "Price change over 24h, %."),
        "last_updated": when("2026-11-24T04:59:31Z", "Upstream's update time.", null=True),
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
CoinDetail = _serializer(
    "CoinDetail",
    {
        **coin_fields(),
        "market": Snapshot(allow_null=True, help_text="Latest market snapshot; null if none yet."),
    },
    "One coin with its latest market snapshot.",
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
    {"data": Market(many=True), "next_cursor": next_cursor(), "next_offset": next_offset()},
    "A page of market snapshots.",
)
Price = _serializer(
    "Price",
    {
        "price": num(91234.5, "USD."),
        "market_cap": num(1.81e12, "USD."),
        "volume_24h": num(3.2e10, "USD."),
        "change_24h_pct": num(1.8, "%."),
        "last_updated": when("2026-11-24T04:59:31Z", "Upstream's update time.", null=True),
    },
    "Latest price data of a coin.",
)
Prices = _serializer(
    "Prices",
    {
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
