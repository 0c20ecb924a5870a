"""OpenAPI pieces shared by the market data views: parameters, response components, examples."""

from __future__ import annotations

from typing import Final

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apiplatform.schema import PROBLEM_CONTENT_TYPE, problem_response
from marketdata import indicators, screener
from marketdata.api import params
from marketdata.models import TIMEFRAMES

Q: Final = OpenApiParameter.QUERY


_BAD_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/validation-error",
    "title": "Invalid request parameters",
    "status": 400,
    "detail": "limit: must be between 1 and 5000",
    "instance": "/v1/coins/bitcoin/candles",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
    "errors": [{"parameter": "limit", "detail": "must be between 1 and 5000"}],
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


PROBLEM_JSON = PROBLEM_CONTENT_TYPE


def errors(
    *, not_found: bool = False, not_modified: bool = False
) -> dict[int | tuple[int, str], OpenApiResponse]:
    out: dict[int | tuple[int, str], OpenApiResponse] = {
        (400, PROBLEM_JSON): problem(
            "A parameter is invalid (`validation-error`; `errors` names it).", _BAD_EXAMPLE
        ),
        (401, PROBLEM_JSON): problem(
            "The API key is missing, malformed, unknown, revoked or expired.", _UNAUTH_EXAMPLE
        ),
        (406, PROBLEM_JSON): problem(
            "The Accept header asks for a media type this endpoint cannot serve.", _NOT_ACCEPTABLE_EXAMPLE
        ),
    }
    if not_found:
        out[(404, PROBLEM_JSON)] = problem("No coin with this id (`not-found`).", _NOT_FOUND_EXAMPLE)
    if not_modified:
        out[304] = OpenApiResponse(description="Not modified: your `If-None-Match` ETag is current.")
    return out


TIMEFRAME = OpenApiParameter(
    "timeframe",
    str,
    Q,
    enum=list(TIMEFRAMES),
    default="1h",
    description="Candle width. 1m may need a paid plan (403 `plan-upgrade-required`).",
)
START = OpenApiParameter(
    "start",
    OpenApiTypes.DATETIME,
    Q,
    description="Earliest bucket start, inclusive: ISO 8601 (naive = UTC) or unix seconds.",
    examples=[OpenApiExample("iso", value="2026-11-01T00:00:00Z")],
)
END = OpenApiParameter(
    "end",
    OpenApiTypes.DATETIME,
    Q,
    description="Bucket starts before this time (exclusive); must be after `start`.",
    examples=[OpenApiExample("iso", value="2026-11-02T00:00:00Z")],
)
ORDER = OpenApiParameter(
    "order",
    str,
    Q,
    enum=["desc", "asc"],
    default="desc",
    description="desc = newest first; asc = oldest first.",
)
CURSOR = OpenApiParameter(
    "cursor",
    str,
    Q,
    description='`next_cursor` of the previous page (also in the `Link: rel="next"` header); keep the '
    "other parameters unchanged while paging.",
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    str,
    OpenApiParameter.HEADER,
    description="An ETag from an earlier answer: 304 if unchanged.",
)
LIMIT_CANDLES = OpenApiParameter(
    "limit",
    int,
    Q,
    default=params.DEFAULT_CANDLES,
    description=f"Rows per page, 1 … {params.MAX_CANDLES}. Costs 1 credit per started 1,000.",
)
FORMAT = OpenApiParameter(
    "format",
    str,
    Q,
    enum=["json", "csv"],
    default="json",
    description="`csv` (or `Accept: text/csv`) streams CSV with a header row.",
)


def limit(default: int, maximum: int) -> OpenApiParameter:
    return OpenApiParameter("limit", int, Q, default=default, description=f"Rows per page, 1 … {maximum}.")


OFFSET = OpenApiParameter("offset", int, Q, default=0, description="Rows to skip (0 … 100000).")
IDS = OpenApiParameter(
    "ids",
    str,
    Q,
    description="Comma-separated coin ids (CoinGecko ids), e.g. `bitcoin,ethereum`.",
    examples=[OpenApiExample("two", value="bitcoin,ethereum")],
)

RESPONSE_HEADERS_DOC = (
    "Responses carry a strong `ETag` (send it back in `If-None-Match` for a 304) and `Cache-Control`: "
    f"`private, max-age={86400}` when every candle in the page is closed and the range has an `end` in "
    "the past, `private, max-age=10` otherwise."
)

# --- response components ------------------------------------------------------------------------

snapshot_fields: dict[str, serializers.Field] = {
    "price": serializers.FloatField(allow_null=True, help_text="USD."),
    "market_cap": serializers.FloatField(allow_null=True),
    "rank": serializers.IntegerField(allow_null=True, help_text="Upstream market-cap rank."),
    "volume_24h": serializers.FloatField(allow_null=True, help_text="Rolling 24h volume, USD."),
    "high_24h": serializers.FloatField(allow_null=True),
    "low_24h": serializers.FloatField(allow_null=True),
    "change_24h_pct": serializers.FloatField(allow_null=True),
    "last_updated": serializers.DateTimeField(allow_null=True, help_text="Upstream's update time."),
}

COIN_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.CharField(help_text="CoinGecko id."),
    "symbol": serializers.CharField(),
    "name": serializers.CharField(),
    "active": serializers.BooleanField(),
    "first_seen": serializers.DateTimeField(),
    "last_seen": serializers.DateTimeField(),
}
CoinList = inline_serializer(
    "CoinList",
    {
        "data": inline_serializer("Coin", COIN_FIELDS, many=True),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
CoinDetail = inline_serializer(
    "CoinDetail",
    {
        **COIN_FIELDS,
        "market": inline_serializer(
            "Snapshot",
            snapshot_fields,
            allow_null=True,
            help_text="Latest market snapshot; null if none yet.",
        ),
    },
)
MarketList = inline_serializer(
    "MarketList",
    {
        "data": inline_serializer(
            "Market",
            {
                "id": serializers.CharField(),
                "symbol": serializers.CharField(),
                "name": serializers.CharField(),
                **snapshot_fields,
            },
            many=True,
        ),
        "next_offset": serializers.IntegerField(allow_null=True),
    },
)
Prices = inline_serializer(
    "Prices",
    {
        "data": serializers.DictField(
            child=inline_serializer(
                "Price",
                {
                    "price": serializers.FloatField(allow_null=True),
                    "market_cap": serializers.FloatField(allow_null=True),
                    "volume_24h": serializers.FloatField(allow_null=True),
                    "change_24h_pct": serializers.FloatField(allow_null=True),
                    "last_updated": serializers.DateTimeField(allow_null=True),
                },
            ),
            help_text="Keyed by coin id.",
        ),
        "missing": serializers.ListField(
            child=serializers.CharField(), help_text="Requested ids that are unknown or have no price yet."
        ),
    },
)
CANDLE_FIELDS: dict[str, serializers.Field] = {
    "time": serializers.DateTimeField(help_text="Bucket start, ISO 8601 UTC."),
    "open": serializers.FloatField(),
    "high": serializers.FloatField(),
    "low": serializers.FloatField(),
    "close": serializers.FloatField(),
    "volume": serializers.FloatField(
        allow_null=True, help_text="Traded inside the bucket; null where the source does not report it."
    ),
    "volume_24h": serializers.FloatField(
        allow_null=True, help_text="Upstream rolling 24h volume at the bucket's close."
    ),
    "closed": serializers.BooleanField(help_text="false for the current (still changing) bucket."),
    "filled": serializers.BooleanField(help_text="No upstream value in the bucket: carried forward flat."),
}
CandleList = inline_serializer(
    "CandleList",
    {
        "coin": serializers.CharField(),
        "timeframe": serializers.CharField(),
        "data": inline_serializer("Candle", CANDLE_FIELDS, many=True),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
POINT_FIELDS: dict[str, serializers.Field] = {
    "time": serializers.DateTimeField(),
    "value": serializers.FloatField(allow_null=True, required=False, help_text="Single-output indicators."),
    "macd": serializers.FloatField(allow_null=True, required=False),
    "signal": serializers.FloatField(allow_null=True, required=False),
    "histogram": serializers.FloatField(allow_null=True, required=False),
    "upper": serializers.FloatField(allow_null=True, required=False),
    "middle": serializers.FloatField(allow_null=True, required=False),
    "lower": serializers.FloatField(allow_null=True, required=False),
}
IndicatorSeries = inline_serializer(
    "IndicatorSeries",
    {
        "coin": serializers.CharField(),
        "timeframe": serializers.CharField(),
        "indicator": serializers.CharField(),
        "params": serializers.DictField(child=serializers.FloatField()),
        "outputs": serializers.ListField(child=serializers.CharField()),
        "data": inline_serializer("IndicatorPoint", POINT_FIELDS, many=True),
        "next_cursor": serializers.CharField(allow_null=True),
    },
)
RANKING_FIELDS: dict[str, serializers.Field] = {
    "rank": serializers.IntegerField(),
    "id": serializers.CharField(),
    "symbol": serializers.CharField(),
    "market_cap": serializers.FloatField(),
    "share_pct": serializers.FloatField(help_text="Share of the total market cap of all ranked coins, %."),
    "rank_change_24h": serializers.IntegerField(
        allow_null=True, help_text="Rank 24h earlier minus rank now (positive = moved up)."
    ),
    "rank_change_7d": serializers.IntegerField(allow_null=True),
}
Rankings = inline_serializer(
    "Rankings",
    {
        "by": serializers.CharField(),
        "at": serializers.DateTimeField(allow_null=True, help_text="null = latest snapshots."),
        "total_market_cap": serializers.FloatField(),
        "coins": serializers.IntegerField(),
        "data": inline_serializer("Ranking", RANKING_FIELDS, many=True),
        "next_offset": serializers.IntegerField(allow_null=True),
    },
)
SCREENER_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.CharField(),
    "symbol": serializers.CharField(),
    "name": serializers.CharField(),
    "time": serializers.DateTimeField(help_text="Bucket start of the newest closed candle."),
    **{f: serializers.FloatField(allow_null=True, help_text=h) for f, h in screener.FIELDS.items()},
}
Screener = inline_serializer(
    "Screener",
    {
        "timeframe": serializers.CharField(),
        "data": inline_serializer("ScreenerRow", SCREENER_FIELDS, many=True),
        "next_offset": serializers.IntegerField(allow_null=True),
    },
)


def indicator_parameters() -> list[OpenApiParameter]:
    seen: dict[str, OpenApiParameter] = {}
    for spec in indicators.INDICATORS.values():
        for p in spec.params:
            if p.name in seen:
                continue
            used = [s.name for s in indicators.INDICATORS.values() if any(q.name == p.name for q in s.params)]
            seen[p.name] = OpenApiParameter(
                p.name,
                int if p.integer else float,
                Q,
                description=f"{p.description} Used by: {', '.join(used)}. "
                f"Range {p.minimum:g} … {p.maximum:g}; "
                "default per indicator (see the indicator list).",
            )
    return list(seen.values())
