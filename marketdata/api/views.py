"""Public market data endpoints (``/v1/…``). Thin: parse parameters, call a selector, shape output.

Lists are built from tuples and rendered with orjson in one call (no serializer objects per row);
hot answers come from the shared Redis response cache (``caching.ResponseCacheMixin``);
every answer has a strong ETag and Cache-Control; every error is problem+json naming
the parameter.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson
from django.http import Http404, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apiplatform import problems, redis_access
from apiplatform.gateway import PublicAPIView, charge, page_credits
from apiplatform.problems import NOT_FOUND, ProblemError
from apiplatform.query import known_only
from apiplatform.renderers import ORJSONRenderer, dumps
from marketdata import cache as versions
from marketdata import indicators, partitions, quotes, screener, selectors
from marketdata.api import caching, docs, params
from marketdata.models import TIMEFRAME_DELTA, TIMEFRAMES
from marketdata.problems import NO_DATA, NO_DATA_AT

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CSVRenderer(BaseRenderer):
    """Negotiation only: the candle view streams CSV itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else b""


class MarketDataView(PublicAPIView):
    renderer_classes = [ORJSONRenderer]
    allowed_params: frozenset[str] = frozenset()

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            formats = ", ".join(r.format for r in self.get_renderers())
            raise ValidationError({"format": [f"must be one of {formats}"]}) from None

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and response.status_code >= 400:
            # Errors are always problem+json, whatever representation was negotiated.
            request.accepted_renderer = ORJSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def query(self, request):
        query = request.query_params
        known_only(query, self.allowed_params)
        return query

    def coin_or_404(self, coin_id: str) -> tuple[int, str, str]:
        ref = selectors.coin_ref(coin_id) if params.coin_id(coin_id) else None
        if ref is None:
            raise NotFound(f"No coin with id {coin_id[:100]!r}.")
        return ref


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def _page_cost(request, default: int = params.DEFAULT_CANDLES) -> int:
    raw = request.query_params.get("limit", "")
    try:
        limit = int(raw) if raw else default
    except ValueError:
        limit = default
    return max(1, min(params.MAX_CANDLES, max(limit, 1)) + 999) // 1000


def _link_next(request, cursor: str | None, response) -> None:
    """``Link: <next page>; rel="next"``: the same query with ``cursor`` (and without ``offset``)."""
    if cursor:
        query = request.query_params.copy()
        query.pop("offset", None)
        query["cursor"] = cursor
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'


def _paged(request, hit: caching.Cached):
    """200/304 of a cached list answer with its ``Link: rel="next"`` header."""
    response = caching.respond(request, hit)
    _link_next(request, _cursor_of(hit), response)
    return response


def _rows_of(hit: caching.Cached) -> int:
    """Rows in a cached time-series body (candles, indicators) without parsing it: every row of
    ``data`` has one ``"time"`` member, and nothing before ``data`` has one."""
    return hit.body.count(b'"time"', hit.body.find(b'"data":'))


def _cursor_of(hit: caching.Cached) -> str | None:
    """next_cursor of a cached JSON body without parsing it all (bodies are built so that it is the
    only string member named next_cursor)."""
    marker = b'"next_cursor":"'
    at = hit.body.rfind(marker)
    if at < 0:
        return None
    end = hit.body.find(b'"', at + len(marker))
    return hit.body[at + len(marker) : end].decode()


# --- coins ---------------------------------------------------------------------------------------


class CoinListView(MarketDataView):
    endpoint_name = "coins"
    credit_cost = 1
    allowed_params = frozenset({"q", "symbol", "active", "limit", "cursor", "offset"})

    @extend_schema(
        operation_id="coins_list",
        summary="List, search or look up coins",
        description="Without `q` or `symbol`: every coin, ordered by id. `q` searches id or name "
        "(substring, case-insensitive) and symbol (exact); `symbol` looks coins up by exact symbol "
        "(case-insensitive). Searches are ranked: exact symbol or id matches first, then by market cap "
        "(largest first; coins without a snapshot last), then by id — `q=btc` lists bitcoin first. "
        + docs.PAGING_DOC
        + docs.OFFSET_DOC
        + " 1 credit.",
        tags=["coins"],
        parameters=[
            docs.param("q", docs.TEXT_SCHEMA, f"Search text (1 … {params.MAX_Q} characters)."),
            docs.param("symbol", docs.TEXT_SCHEMA, "Exact ticker symbol, case-insensitive (e.g. `btc`)."),
            docs.param("active", {"type": "boolean"}, "Only active (true) or delisted (false) coins."),
            docs.limit(100, 1000),
            docs.CURSOR,
            docs.OFFSET,
        ],
        responses={200: docs.CoinList, **docs.errors(not_modified=True)},
    )
    def get(self, request):
        query = self.query(request)
        q = params.text(query, "q")
        symbol = params.text(query, "symbol")
        active = params.boolean(query, "active")
        limit = params.integer(query, "limit", default=100, minimum=1, maximum=1000)
        ranked = q is not None or symbol is not None
        spec = ("int", "num", "id") if ranked else ("id",)
        context = [q, symbol, active]
        after = params.key_cursor(query, kind="coins", context=context, spec=spec)
        offset = params.offset(query)

        def compute() -> caching.Cached:
            rows = selectors.coins_page(
                q=q, symbol=symbol, active=active, after=after, offset=offset or 0, limit=limit + 1
            )
            more = len(rows) > limit
            rows = rows[:limit]
            cursor = None
            if more:
                last = rows[-1]
                key = [last[6], last[7], last[0]] if ranked else [last[0]]
                cursor = params.encode_key_cursor("coins", context, key)
            data = [
                {
                    "id": r[0],
                    "symbol": r[1],
                    "name": r[2],
                    "active": r[3],
                    "first_seen": r[4],
                    "last_seen": r[5],
                }
                for r in rows
            ]
            return caching.answer(
                dumps(
                    {
                        "data": data,
                        "next_cursor": cursor,
                        "next_offset": _next_offset(offset, after, limit, more),
                    }
                )
            )

        return _paged(request, compute())


def _next_offset(offset: int | None, after: object, limit: int, more: bool) -> int | None:
    """The deprecated ``next_offset``: known when the page was not asked for by cursor."""
    if not more or after is not None:
        return None
    return (offset or 0) + limit


_DETAIL_EXAMPLE = {
    "change_1h_pct": 0.4,
    "change_7d_pct": -3.1,
    "change_30d_pct": 12.5,
    "circulating_supply": 19.8e6,
    "total_supply": 21e6,
    "max_supply": 21e6,
    "fully_diluted_valuation": 1.92e12,
    "ath": 126080.0,
    "ath_date": "2025-10-06T18:57:42Z",
    "atl": 67.81,
    "atl_date": "2013-07-06T00:00:00Z",
    "image_url": "https://assets.coingecko.com/coins/images/1/large/bitcoin.png",
    "ath_change_pct": -27.6,
    "atl_change_pct": 134443.0,
}


def _quote(code: str) -> quotes.Quote:
    """The conversion into ``code``; 503 while its rate is not stored yet (just after a first start)."""
    q = quotes.quote(code)
    if q is None:
        raise ProblemError(
            problems.SERVICE_UNAVAILABLE,
            f"No {code} rate is stored yet (exchange rates are fetched every 5 minutes); retry shortly "
            "or ask in usd.",
            headers={"Retry-After": "60"},
        )
    return q


def _coverage(coin_pk: int) -> bytes:
    """The coverage of every timeframe of one coin as a JSON array, from the shared response cache
    when no series of the coin changed since it was computed (one MGET of the 7 series versions, one
    cache lookup), else computed (``selectors.coverage``: 1 query) and stored."""
    pairs = [(coin_pk, tf) for tf in TIMEFRAMES]
    try:
        series_versions = tuple(versions.candles_versions(pairs))
    except redis_access.ERRORS:
        return dumps(_coverage_rows(coin_pk))
    parts = (coin_pk, series_versions)
    version, hit = caching.lookup("coverage", parts, versions.candles_key(coin_pk, TIMEFRAMES[0]))
    if hit is None:
        hit = caching.answer(dumps(_coverage_rows(coin_pk)))
        caching.store("coverage", parts, version, hit, caching.ttl_of(hit))
    return hit.body


def _coverage_rows(coin_pk: int) -> list[dict]:
    out = []
    for c in selectors.coverage(coin_id=coin_pk):
        step = TIMEFRAME_DELTA[c.timeframe]
        out.append(
            {
                "timeframe": c.timeframe,
                "first": c.first,
                "last": c.last,
                "count": c.count,
                "first_partial": c.first_partial,
                "missing_buckets": c.missing_buckets,
                "gaps_total": c.gaps_total,
                "gaps": [{"start": a, "end": b, "buckets": round((b - a) / step)} for a, b in c.gaps],
                "gaps_checked_from": c.gaps_checked_from,
            }
        )
    return out


_COVERAGE_EXAMPLE = {
    "timeframe": "1h",
    "first": "2026-08-26T00:00:00Z",
    "last": "2026-11-24T04:00:00Z",
    "count": 2187,
    "first_partial": False,
    "missing_buckets": 3,
    "gaps_total": 2,
    "gaps": [
        {"start": "2026-11-24T06:00:00Z", "end": "2026-11-24T08:00:00Z", "buckets": 2},
        {"start": "2026-10-02T13:00:00Z", "end": "2026-10-02T14:00:00Z", "buckets": 1},
    ],
    "gaps_checked_from": "2026-08-26T00:00:00Z",
}


class CoinDetailView(MarketDataView):
    endpoint_name = "coin"
    credit_cost = 1

    @extend_schema(
        operation_id="coins_retrieve",
        summary="One coin with its latest market snapshot and candle coverage",
        description="The coin, its latest market snapshot and, per timeframe, what candles are stored "
        "(`coverage`: as `GET /v1/coins/{coin_id}/coverage`). 1 credit.",
        tags=["coins"],
        parameters=[docs.COIN_ID],
        responses={200: docs.CoinDetail, **docs.errors(not_found=True, not_modified=True)},
        examples=[
            OpenApiExample(
                "bitcoin",
                response_only=True,
                value={
                    "id": "bitcoin",
                    "symbol": "btc",
                    "name": "Bitcoin",
                    "active": True,
                    "first_seen": "2026-01-01T00:00:00Z",
                    "last_seen": "2026-11-24T05:00:00Z",
                    "market": {
                        "price": 91234.5,
                        "market_cap": 1.81e12,
                        "rank": 1,
                        "volume_24h": 3.2e10,
                        "high_24h": 92000.0,
                        "low_24h": 89000.0,
                        "change_24h_pct": 1.8,
                        "last_updated": "2026-11-24T04:59:31Z",
                        **_DETAIL_EXAMPLE,
                    },
                    "coverage": [_COVERAGE_EXAMPLE],
                },
            )
        ],
    )
    def get(self, request, coin_id: str):
        self.query(request)
        row = selectors.coin_detail(coin_id) if params.coin_id(coin_id) else None
        if row is None:
            raise NotFound(f"No coin with id {coin_id[:100]!r}.")
        coin_pk, _, _ = self.coin_or_404(coin_id)  # the coin's id: memoised, no query once known
        market = None
        if row[14] is not None:  # the snapshot's fetched_at: there is one
            market = quotes.market_row((*row[6:14], *row[15:]), quotes.USD)
        body = dumps(
            {
                "id": row[0],
                "symbol": row[1],
                "name": row[2],
                "active": row[3],
                "first_seen": row[4],
                "last_seen": row[5],
                "market": market,
            }
        )
        body = body[:-1] + b',"coverage":' + _coverage(coin_pk) + b"}"
        return caching.respond(request, caching.answer(body))


class CoverageView(MarketDataView):
    endpoint_name = "coverage"
    credit_cost = 1

    @extend_schema(
        operation_id="coins_coverage",
        summary="How far back each timeframe of a coin goes, and its known gaps",
        description=(
            "Per timeframe (shortest first): the first and last candle (bucket start), how many are "
            "stored, whether the first one is `partial` (its bucket started before our first "
            "observation), and the gaps — runs of missing buckets between the first and the last "
            "candle, newest first. A `filled` candle (no upstream change in the bucket, carried "
            "forward) is no gap. Gaps are what the data-quality checks re-fetch: a repaired gap "
            "disappears. Nothing after `last` is listed as a gap: compare `last` with now. "
            "Gaps are searched among the newest 10,000 candles of each timeframe (`gaps_checked_from`); "
            "`count` is exact. Cached until a candle of the coin changes. 1 credit."
        ),
        tags=["coins"],
        parameters=[docs.COIN_ID],
        responses={200: docs.Coverage, **docs.errors(not_found=True, not_modified=True)},
        examples=[
            OpenApiExample(
                "bitcoin",
                response_only=True,
                value={"coin": "bitcoin", "timeframes": [_COVERAGE_EXAMPLE]},
            )
        ],
    )
    def get(self, request, coin_id: str):
        self.query(request)
        coin_pk, _, _ = self.coin_or_404(coin_id)
        body = dumps({"coin": coin_id})[:-1] + b',"timeframes":' + _coverage(coin_pk) + b"}"
        return caching.respond(request, caching.answer(body))


# --- markets and prices --------------------------------------------------------------------------


class MarketListView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "markets"
    cache_name = "markets"
    credit_cost = 1
    allowed_params = frozenset({"ids", "order_by", "direction", "limit", "cursor", "offset", "vs"})

    @extend_schema(
        operation_id="markets_list",
        summary="Latest market snapshots, ranked",
        description="Latest snapshot per coin ordered by market cap (default), 24h volume, 24h change, "
        "price or upstream rank, then by id; nulls last. `ids` selects coins. Each row carries the "
        "price fields (refreshed every 20 s for the top coins, every minute for the others) and the "
        "details: supply, FDV, all-time high/low with dates, 1h/7d/30d change and the logo URL. "
        "`vs` picks the quote currency (sorting is by the USD values: the same order in every "
        "currency). " + docs.PAGING_DOC + docs.OFFSET_DOC + " 1 credit.",
        tags=["markets"],
        parameters=[
            docs.IDS,
            docs.param(
                "order_by",
                docs.enum_schema(list(selectors.MARKET_ORDER), default="market_cap"),
                "Sort key (nulls last, then by id).",
            ),
            docs.param(
                "direction",
                docs.enum_schema(["desc", "asc"], default="desc", names=["DESCENDING", "ASCENDING"]),
                "Sort direction.",
            ),
            docs.limit(100, 250),
            docs.CURSOR,
            docs.OFFSET,
            docs.vs_param(quotes.vs_currencies()),
        ],
        responses={200: docs.MarketList, **docs.errors(not_modified=True, unavailable=True)},
    )
    def get(self, request):
        query = self.query(request)
        ids = params.id_list(query, "ids")
        vs = params.vs_currency(query, supported=quotes.vs_currencies())
        order_by = params.choice(
            query, "order_by", choices=tuple(selectors.MARKET_ORDER), default="market_cap"
        )
        direction = params.choice(query, "direction", choices=("desc", "asc"), default="desc")
        limit = params.integer(query, "limit", default=100, minimum=1, maximum=250)
        context = [order_by, direction]
        after = params.key_cursor(query, kind="markets", context=context, spec=("num", "id"))
        offset = params.offset(query)
        column = _MARKET_COLUMN[order_by]
        q = _quote(vs)

        def compute() -> caching.Cached:
            rows = selectors.markets_page(
                ids=ids,
                order_by=order_by,
                descending=direction == "desc",
                after=after,
                offset=offset or 0,
                limit=limit + 1,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            data = [{"id": r[0], "symbol": r[1], "name": r[2], **quotes.market_row(r[3:], q)} for r in rows]
            cursor = None
            if more:  # the cursor carries the USD sort value (the order is the same in every currency)
                usd_value = rows[-1][3 + quotes.MARKET_FIELDS.index(column)]
                cursor = params.encode_key_cursor("markets", context, [usd_value, rows[-1][0]])
            next_off = _next_offset(offset, after, limit, more)
            body = {"vs": vs, "data": data, "next_cursor": cursor, "next_offset": next_off}
            return caching.answer(dumps(body))

        parts = (
            vs,
            tuple(ids or ()),
            order_by,
            direction,
            limit,
            None if after is None else tuple(after),
            offset,
        )
        hit = self.cached(parts=parts, version_key=versions.snapshots_key(), compute=compute)
        return _paged(request, hit)


#: The response member holding each market sort key's value (the cursor carries it).
_MARKET_COLUMN = {
    "market_cap": "market_cap",
    "volume": "volume_24h",
    "change": "change_24h_pct",
    "price": "price",
    "rank": "rank",
}


class PriceView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "prices"
    cache_name = "prices"
    credit_cost = 1
    allowed_params = frozenset({"ids", "vs", "include"})

    @extend_schema(
        operation_id="prices_retrieve",
        summary="Latest prices of up to 250 coins",
        description="Latest price, market cap, 24h volume, 24h change and the upstream's update time, "
        "keyed by coin id, in the quote currency `vs`. `include` adds field groups: "
        + "; ".join(f"`{g}` ({', '.join(f)})" for g, f in quotes.INCLUDE_GROUPS.items())
        + ". The top coins by market cap are refreshed every 20 s, the others every minute. Unknown ids "
        "(or coins without a price yet) are listed in `missing`. 1 credit.",
        tags=["markets"],
        parameters=[
            docs.IDS_REQUIRED,
            docs.vs_param(quotes.vs_currencies()),
            docs.param(
                "include",
                {
                    "type": "array",
                    "items": docs.enum_schema(list(quotes.INCLUDE_GROUPS)),
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "Field groups to add, comma-separated: "
                + ", ".join(f"`{g}`" for g in quotes.INCLUDE_GROUPS)
                + ". An unknown group is a 400 naming the valid ones.",
                style="form",
                explode=False,
            ),
        ],
        responses={200: docs.Prices, **docs.errors(not_modified=True, unavailable=True)},
        examples=[
            OpenApiExample(
                "prices",
                response_only=True,
                value={
                    "vs": "usd",
                    "data": {
                        "bitcoin": {
                            "price": 91234.5,
                            "market_cap": 1.81e12,
                            "volume_24h": 3.2e10,
                            "change_24h_pct": 1.8,
                            "last_updated": "2026-11-24T04:59:31Z",
                        }
                    },
                    "missing": ["nope"],
                },
            )
        ],
    )
    def get(self, request):
        query = self.query(request)
        ids = params.id_list(query, "ids", required=True)
        vs = params.vs_currency(query, supported=quotes.vs_currencies())
        groups = params.include(query, groups=tuple(quotes.INCLUDE_GROUPS))
        wanted = tuple(sorted(ids))
        q = _quote(vs)

        def compute() -> caching.Cached:
            if vs == "usd" and not groups:  # the hot default: JSON rendered by PostgreSQL
                data_json, found = selectors.prices_json(list(wanted))
                data = data_json.encode()
            else:
                rows = selectors.prices_rows(list(wanted))
                found = [r[0] for r in rows]
                data = dumps({r[0]: quotes.price_entry(quotes.market_row(r[3:], q), groups) for r in rows})
            found_set = set(found)
            missing = [i for i in wanted if i not in found_set]
            return caching.answer(
                b'{"vs":' + dumps(vs) + b',"data":' + data + b',"missing":' + dumps(missing) + b"}"
            )

        parts = (wanted, vs, groups) if vs != "usd" or groups else wanted
        hit = self.cached(parts=parts, version_key=versions.snapshots_key(), compute=compute)
        return caching.respond(request, hit)


# --- the global market ---------------------------------------------------------------------------

_GLOBAL_FIELDS = (
    "time",
    "total_market_cap",
    "total_volume",
    "btc_dominance",
    "eth_dominance",
    "active_coins",
    "markets",
    "market_cap_change_24h_pct",
)
_GLOBAL_INTERVALS = {"5m": 300, "1h": 3600, "1d": 86400}
MAX_GLOBAL_POINTS = 5000


class GlobalView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "global"
    cache_name = "global"
    credit_cost = 1

    @extend_schema(
        operation_id="global_retrieve",
        summary="The whole crypto market now",
        description="Total market cap and 24h volume (USD), Bitcoin and Ethereum dominance (% of the "
        "total market cap), active coins and exchanges, as CoinGecko's `/global` reports them for every "
        "coin it tracks (not only the coins listed here), stored every minute. History: "
        "`GET /v1/global/history`. 503 until the first snapshot is stored. 1 credit.",
        tags=["markets"],
        responses={200: docs.GlobalMarket, **docs.errors(not_modified=True, unavailable=True)},
    )
    def get(self, request):
        self.query(request)

        def compute() -> caching.Cached:
            row = selectors.global_latest()
            if row is None:
                raise ProblemError(
                    problems.SERVICE_UNAVAILABLE,
                    "No global market snapshot is stored yet (fetched every minute); retry shortly.",
                    headers={"Retry-After": "60"},
                )
            return caching.answer(dumps(dict(zip(_GLOBAL_FIELDS, row[:8], strict=True))))

        hit = self.cached(parts=("latest",), version_key=versions.global_key(), compute=compute)
        return caching.respond(request, hit)


class GlobalHistoryView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "global-history"
    cache_name = "global-history"
    credit_cost = 1
    allowed_params = frozenset({"start", "end", "interval"})

    @extend_schema(
        operation_id="global_history",
        summary="The whole crypto market over time",
        description="One point per `interval` bucket of [`start`, `end`) that has data: the last stored "
        "`/global` snapshot of the bucket (snapshots are stored every minute since this deployment "
        f"started). Default: the last 24 hours. At most {MAX_GLOBAL_POINTS} points per call (a range "
        "holding more is a 400 naming `start`). 1 credit.",
        tags=["markets"],
        parameters=[
            docs.param("start", docs.TIME_SCHEMA, "Earliest time, inclusive; default `end` - 24 h."),
            docs.param("end", docs.TIME_SCHEMA, "Latest time, exclusive; default now."),
            docs.param(
                "interval", {**docs.GLOBAL_INTERVAL_SCHEMA, "default": "1h"}, "Bucket width of the series."
            ),
        ],
        responses={200: docs.GlobalHistory, **docs.errors(not_modified=True)},
    )
    def get(self, request):
        query = self.query(request)
        start, end = params.time_range(query)
        interval = params.choice(query, "interval", choices=tuple(_GLOBAL_INTERVALS), default="1h")
        seconds = _GLOBAL_INTERVALS[interval]
        end = end or timezone.now()
        start = start or end - timedelta(days=1)

        def compute() -> caching.Cached:
            # the bound is on the points answered (buckets that hold data), not on the range's width:
            # a wide range over a short stored history is fine
            rows = selectors.global_series(
                start=start, end=end, bucket_seconds=seconds, limit=MAX_GLOBAL_POINTS + 1
            )
            if len(rows) > MAX_GLOBAL_POINTS:
                params.fail(
                    "start", f"more than {MAX_GLOBAL_POINTS} {interval} points in the range: narrow it"
                )
            names = ("time", "observed_at", *_GLOBAL_FIELDS[1:6])
            data = [dict(zip(names, r, strict=True)) for r in rows]
            return caching.answer(dumps({"interval": interval, "data": data}))

        parts = (start, end, interval)
        hit = self.cached(parts=parts, version_key=versions.global_key(), compute=compute)
        return caching.respond(request, hit)


# --- candles -------------------------------------------------------------------------------------


def _range_is_closed(timeframe: str, end, rows_closed: bool, now: datetime) -> bool:
    """Long caching only if every row is closed and nothing newer can appear inside the range."""
    return rows_closed and end is not None and end <= now


class CandleListView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "candles"
    cache_name = "candles"
    credit_cost = 1
    renderer_classes = [ORJSONRenderer, CSVRenderer]
    allowed_params = frozenset({"timeframe", "start", "end", "limit", "order", "cursor", "format"})

    def get_credit_cost(self, request) -> int:
        return _page_cost(request)

    @extend_schema(
        operation_id="candles_list",
        summary="OHLCV candles of one coin",
        description=(
            "Candles with `start <= time < end`, newest first (`order=desc`, default) or oldest first, "
            f"up to `limit` ({params.MAX_CANDLES} max) per page; follow `next_cursor` (or the `Link` "
            "header) for the rest. CSV: `GET /v1/coins/{coin_id}/candles.csv` (`format=csv` and "
            "`Accept: text/csv` here are deprecated aliases that still stream CSV). "
            "Credits: 1 per started 1,000 rows returned (min. 1); a 304 costs 0. " + docs.RESPONSE_HEADERS_DOC
        ),
        tags=["candles"],
        parameters=[
            *docs.CANDLE_RANGE,
            docs.FORMAT,
            docs.IF_NONE_MATCH,
        ],
        responses={
            (200, "application/json"): docs.CandleList,
            **docs.errors(not_found=True, not_modified=True),
        },
        examples=[
            OpenApiExample(
                "1h candles",
                response_only=True,
                value={
                    "coin": "bitcoin",
                    "timeframe": "1h",
                    "data": [
                        {
                            "time": "2026-11-24T04:00:00Z",
                            "open": 91000.0,
                            "high": 91500.0,
                            "low": 90800.0,
                            "close": 91234.5,
                            "volume": None,
                            "volume_24h": 3.2e10,
                            "closed": False,
                            "filled": False,
                            "samples": 57,
                            "partial": False,
                        }
                    ],
                    "next_cursor": "dDE6ZGVzYzoxNzY0MDQ2ODAwMDAwMDAw",
                },
            )
        ],
    )
    def get(self, request, coin_id: str):
        query = self.query(request)
        coin_pk, _, _ = self.coin_or_404(coin_id)
        timeframe = params.timeframe(query)
        start, end = params.time_range(query)
        limit = params.integer(
            query, "limit", default=params.DEFAULT_CANDLES, minimum=1, maximum=params.MAX_CANDLES
        )
        order = params.choice(query, "order", choices=("desc", "asc"), default="desc")
        cursor = params.time_cursor(query, order=order)
        self.require_timeframe(request, timeframe)

        def compute() -> caching.Cached:
            more, rows_closed, last, data_json = selectors.candles_page_json(
                coin_id=coin_pk,
                timeframe=timeframe,
                start=start,
                end=end,
                cursor_us=cursor.after_us if cursor else None,
                order=order,
                limit=limit,
            )
            next_cursor = params.encode_time_cursor(order, last) if more and last is not None else None
            head = dumps({"coin": coin_id, "timeframe": timeframe})[:-1]
            body = head + b',"data":' + data_json.encode() + b',"next_cursor":' + dumps(next_cursor) + b"}"
            return caching.answer(body, long=_range_is_closed(timeframe, end, rows_closed, timezone.now()))

        parts = (coin_pk, timeframe, start, end, limit, order, cursor)
        hit = self.cached(parts=parts, version_key=versions.candles_key(coin_pk, timeframe), compute=compute)
        charge(request, page_credits(_rows_of(hit)))
        if request.accepted_renderer.format == "csv":
            return self._csv(request, hit)
        response = caching.respond(request, hit)
        _link_next(request, _cursor_of(hit), response)
        return response

    def _csv(self, request, hit: caching.Cached):
        return _csv_answer(
            request, hit, selectors.CANDLE_COLUMNS, lambda doc: f"{doc['coin']}-{doc['timeframe']}.csv"
        )


def _csv_answer(request, hit: caching.Cached, cols: tuple[str, ...], filename: Callable[[dict], str]):
    """The rows of a cached JSON candle page (``data``) streamed as CSV with a header row of ``cols``,
    its own strong ETag, the page's Cache-Control and ``Link: rel="next"``."""
    etag = hit.etag[:-1] + '-csv"'
    if caching.if_none_match(request, etag):
        return caching.respond(request, hit, etag=etag)
    doc = orjson.loads(hit.body)

    def rows():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for i, item in enumerate(doc["data"], 1):
            writer.writerow(["" if item[c] is None else _csv_value(item[c]) for c in cols])
            if i % 500 == 0:
                yield buf.getvalue().encode()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode()

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["ETag"] = etag
    response["Cache-Control"] = hit.cache_control
    response["Vary"] = caching.VARY
    response["Content-Disposition"] = f'inline; filename="{filename(doc)}"'
    _link_next(request, doc.get("next_cursor"), response)
    return response


def _csv_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class CandleCSVView(CandleListView):
    """The candles of ``CandleListView`` as CSV: its own operation so that a generated client can
    fetch it (generators read one media type per response)."""

    renderer_classes = [CSVRenderer]
    allowed_params = frozenset({"timeframe", "start", "end", "limit", "order", "cursor"})

    @extend_schema(
        operation_id="candles_csv",
        summary="OHLCV candles of one coin as CSV",
        description=(
            "The rows of `GET /v1/coins/{coin_id}/candles` as `text/csv` with a header row "
            f"({', '.join(selectors.CANDLE_COLUMNS)}); booleans as `true`/`false`, null as an empty field. "
            'Same parameters, paging (`Link: rel="next"` header), caching and credits. Errors stay '
            "`application/problem+json`."
        ),
        tags=["candles"],
        parameters=[
            *docs.CANDLE_RANGE,
            docs.IF_NONE_MATCH,
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                {"type": "string", "example": ",".join(selectors.CANDLE_COLUMNS) + "\n"},
                description="CSV with a header row.",
            ),
            **docs.errors(not_found=True, not_modified=True),
        },
    )
    def get(self, request, coin_id: str):
        return super().get(request, coin_id)


# --- indicators ----------------------------------------------------------------------------------


def _indicator_params(query, spec: indicators.Indicator) -> dict:
    out: dict[str, float | int | None] = {}
    for p in spec.params:
        if p.integer:
            out[p.name] = params.integer(
                query, p.name, default=int(p.default), minimum=int(p.minimum), maximum=int(p.maximum)
            )
            if p.choices and out[p.name] not in {v for v, _ in p.choices}:
                params.fail(p.name, f"must be one of {', '.join(str(v) for v, _ in p.choices)}")
        else:
            out[p.name] = params.number(
                query, p.name, default=p.default, minimum=p.minimum, maximum=p.maximum
            )
    every = {q.name for s in indicators.INDICATORS.values() for q in s.params}
    for name in every - {p.name for p in spec.params}:
        if name in query:
            params.fail(name, f"is not a parameter of {spec.name}")
    return out


class IndicatorView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "indicators"
    cache_name = "indicators"
    credit_cost = 1
    allowed_params = frozenset(
        {"timeframe", "start", "end", "limit", "order", "cursor"}
        | {p.name for s in indicators.INDICATORS.values() for p in s.params}
    )

    def get_credit_cost(self, request) -> int:
        return _page_cost(request)

    @extend_schema(exclude=True)  # documented per indicator (indicator_view below)
    def get(self, request, coin_id: str, name: str):
        query = self.query(request)
        coin_pk, _, _ = self.coin_or_404(coin_id)
        spec = indicators.INDICATORS.get(name)
        if spec is None:
            raise NotFound(f"No indicator {name[:50]!r}; one of {', '.join(indicators.INDICATORS)}.")
        timeframe = params.timeframe(query)
        start, end = params.time_range(query)
        limit = params.integer(
            query, "limit", default=params.DEFAULT_CANDLES, minimum=1, maximum=params.MAX_CANDLES
        )
        order = params.choice(query, "order", choices=("desc", "asc"), default="desc")
        cursor = params.time_cursor(query, order=order)
        values = _indicator_params(query, spec)
        self.require_timeframe(request, timeframe)
        parts = (coin_pk, timeframe, name, tuple(sorted(values.items())), start, end, limit, order, cursor)
        hit = self.cached(
            parts=parts,
            version_key=versions.candles_key(coin_pk, timeframe),
            compute=lambda: self._compute(
                coin_id, coin_pk, spec, values, timeframe, start, end, limit, order, cursor
            ),
        )
        charge(request, page_credits(_rows_of(hit)))
        response = caching.respond(request, hit)
        _link_next(request, _cursor_of(hit), response)
        return response

    def _compute(self, coin_id, coin_pk, spec, values, timeframe, start, end, limit, order, cursor):
        upper = end
        if cursor is not None and order == "desc":
            at = _time(cursor.after_us)
            upper = at if upper is None else min(upper, at)
        # Only the page and the warm-up its first value needs, not the whole stored series: the
        # values are the same (marketdata.indicators.warmup, docs/indicators.md).
        lower, inclusive = start, True
        if cursor is not None and order == "asc":
            after = _time(cursor.after_us)
            if lower is None or after >= lower:
                lower, inclusive = after, False
        series = selectors.series_window(
            coin_id=coin_pk,
            timeframe=timeframe,
            end=upper,
            lower=lower,
            lower_inclusive=inclusive,
            order=order,
            count=limit + 1,
            warmup=indicators.warmup(spec.name, values),
        )
        times = series["time"]
        lo = 0
        if start is not None:
            lo = int(np.searchsorted(times, int(start.timestamp() * 1e6), side="left"))
        if cursor is not None and order == "asc":
            lo = max(lo, int(np.searchsorted(times, cursor.after_us, side="right")))
        hi = len(times)
        if order == "asc":
            idx = np.arange(lo, min(hi, lo + limit + 1))
        else:
            idx = np.arange(hi - 1, max(lo, hi - limit - 1) - 1, -1)
        more = len(idx) > limit
        idx = idx[:limit]
        keys = list(spec.outputs)
        picked = (
            indicators.compute_at(spec.name, params=values, timeframe=timeframe, series=series, positions=idx)
            if len(idx)
            else {}
        )
        data = []
        for j, i in enumerate(idx.tolist()):
            point = {"time": _time(times[i])}
            for k in keys:
                v = float(picked[k][j])
                point[k] = None if math.isnan(v) else v
            data.append(point)
        next_cursor = params.encode_time_cursor(order, _time(times[idx[-1]])) if more else None
        body = dumps(
            {
                "coin": coin_id,
                "timeframe": timeframe,
                "indicator": spec.name,
                "params": values,
                "outputs": keys,
                "data": data,
                "next_cursor": next_cursor,
            }
        )
        rows_closed = bool(series["closed"][idx].all()) if len(idx) else True
        return caching.answer(body, long=_range_is_closed(timeframe, end, rows_closed, timezone.now()))


def _indicator_example(spec: indicators.Indicator) -> dict:
    return {
        "coin": "bitcoin",
        "timeframe": "1h",
        "indicator": spec.name,
        "params": {p.name: int(p.default) if p.integer else p.default for p in spec.params},
        "outputs": list(spec.outputs),
        "data": [{"time": "2026-11-24T03:00:00Z", **dict.fromkeys(spec.outputs, 61.3)}],
        "next_cursor": None,
    }


def indicator_view(spec: indicators.Indicator) -> type[IndicatorView]:
    """The view of one indicator (``/v1/coins/{coin_id}/indicators/<name>``): its own operation, so
    that its parameters (with their ranges) and its outputs are exactly documented."""

    class View(IndicatorView):
        @extend_schema(
            operation_id=f"indicators_{spec.name}",
            summary=f"{spec.title} of one coin",
            description=(
                f"{spec.title} per candle ({spec.formula}), computed as over the whole stored series "
                "to double precision (the page is read with the warm-up its first value needs, see "
                "docs/indicators.md; a value does not depend on the range asked for: pages give the "
                "same numbers as one big request). Definitions, seeding and warm-up are TA-Lib's "
                "(docs/indicators.md); warm-up points have null values. "
                f"Outputs: {', '.join(spec.outputs)}. Paging as for candles. "
                "Credits: 1 per started 1,000 rows returned (min. 1); a 304 costs 0. "
                + docs.RESPONSE_HEADERS_DOC
            ),
            tags=["indicators"],
            parameters=[
                *docs.CANDLE_RANGE,
                *docs.indicator_parameters(spec),
                docs.IF_NONE_MATCH,
            ],
            responses={200: docs.indicator_series(spec), **docs.errors(not_found=True, not_modified=True)},
            examples=[OpenApiExample(spec.name, response_only=True, value=_indicator_example(spec))],
        )
        def get(self, request, coin_id: str, name: str = spec.name):
            return super().get(request, coin_id, name)

    View.__name__ = View.__qualname__ = f"{spec.name.capitalize()}IndicatorView"
    return View


INDICATOR_VIEWS: dict[str, type[IndicatorView]] = {
    name: indicator_view(spec) for name, spec in indicators.INDICATORS.items()
}


# --- rankings and screener -----------------------------------------------------------------------


def _ranking_order(caps: dict[int, tuple]) -> list[tuple[int, tuple]]:
    """Coins by market cap, largest first, ties by upstream id: the ranking's sort key."""
    return sorted(caps.items(), key=lambda kv: (-kv[1][2], kv[1][0]))


def _ranks(caps: dict[int, tuple]) -> dict[int, int]:
    return {coin: i for i, (coin, _) in enumerate(_ranking_order(caps), 1)}


_NO_DATA_EXAMPLE = {
    "type": "http://127.0.0.1:8000/problems/no-data-at",
    "title": "No data at this time",
    "status": 404,
    "detail": "No rankings before 2026-08-26T01:00:00Z (the close of the first stored hour): ask for a "
    "later `at`, or omit it for now.",
    "instance": "/v1/rankings",
    "request_id": "5f0c7e0e3b9a4d0f9b6f2f1f6f7e8a9b",
    "at": "2020-01-01T00:00:00Z",
    "earliest": "2026-08-26T01:00:00Z",
}


class RankingView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "rankings"
    cache_name = "rankings"
    credit_cost = 2
    allowed_params = frozenset({"by", "at", "limit", "cursor", "offset"})

    @extend_schema(
        operation_id="rankings_list",
        summary="Market-cap rankings at a time",
        description=(
            "Coins ranked by market cap (ties by id) now (latest snapshots) or `at` a past time (market "
            "caps at the close of the last full hour before `at`, from the 1h candles; a time in the "
            "future means now), with the rank change over 24h and 7d (positive = moved up; null if the "
            "coin was not ranked then) and each coin's share of the total market cap of all ranked coins. "
            + docs.PAGING_DOC
            + docs.OFFSET_DOC
            + " 2 credits."
        ),
        tags=["markets"],
        parameters=[
            docs.param("by", docs.enum_schema(["market_cap"], default="market_cap"), "Ranking key."),
            docs.AT,
            docs.limit(100, 1000),
            docs.CURSOR,
            docs.OFFSET,
        ],
        responses={
            200: docs.Rankings,
            **docs.errors(not_modified=True),
            (404, docs.PROBLEM_JSON): docs.problem(
                "No market caps are stored for `at` (before the first data, or a gap): `no-data-at`, "
                "with `earliest`, the earliest time a ranking exists for (null: none yet).",
                _NO_DATA_EXAMPLE,
            ),
        },
    )
    def get(self, request):
        query = self.query(request)
        by = params.choice(query, "by", choices=("market_cap",), default="market_cap")
        at = params.time_value(query, "at")
        limit = params.integer(query, "limit", default=100, minimum=1, maximum=1000)
        now = timezone.now()
        if at is not None and at >= now:
            at = None  # the latest ranking is the one "at" any time from now on
        context = [by, at.isoformat() if at is not None else None]
        after = params.key_cursor(query, kind="rankings", context=context, spec=("num", "id"))
        offset = params.offset(query)

        def compute() -> caching.Cached:
            current = selectors.snapshot_market_caps() if at is None else selectors.market_caps_at(at)
            if at is not None and not current:
                _no_ranking_at(at)
            ref = at or now
            ordered = _ranking_order(current)
            before_24h = _ranks(selectors.market_caps_at(ref - timedelta(hours=24)))
            before_7d = _ranks(selectors.market_caps_at(ref - timedelta(days=7)))
            total = float(sum(v[2] for v in current.values()))
            first = offset or 0
            if after is not None:
                key = (-(after[0] or 0.0), after[1])
                start = next((i for i, (_, v) in enumerate(ordered) if (-v[2], v[0]) > key), len(ordered))
                first += start
            page = ordered[first : first + limit]
            data = []
            for i, (coin, (upstream, symbol, cap)) in enumerate(page, first + 1):
                data.append(
                    {
                        "rank": i,
                        "id": upstream,
                        "symbol": symbol,
                        "market_cap": cap,
                        "share_pct": cap / total * 100.0 if total else 0.0,
                        "rank_change_24h": before_24h[coin] - i if coin in before_24h else None,
                        "rank_change_7d": before_7d[coin] - i if coin in before_7d else None,
                    }
                )
            more = first + limit < len(ordered)
            cursor = None
            if more and data:
                cursor = params.encode_key_cursor(
                    "rankings", context, [data[-1]["market_cap"], data[-1]["id"]]
                )
            body = dumps(
                {
                    "by": by,
                    "at": at,
                    "total_market_cap": total,
                    "coins": len(ordered),
                    "data": data,
                    "next_cursor": cursor,
                    "next_offset": _next_offset(offset, after, limit, more),
                }
            )
            return caching.answer(body)

        minute = None if at is not None else now.replace(second=0, microsecond=0)
        parts = (by, at, limit, None if after is None else tuple(after), offset, minute)
        hit = self.cached(parts=parts, version_key=versions.snapshots_key(), compute=compute)
        return _paged(request, hit)


def _no_ranking_at(at: datetime) -> None:
    """404 ``no-data-at`` for a past ranking with no market caps, naming the earliest time there is
    one (1 query)."""
    earliest = selectors.rankings_earliest()
    if earliest is None:
        detail = "No market caps are stored yet: rankings exist only for now (omit `at`)."
    elif at < earliest:
        detail = (
            f"No rankings before {earliest:%Y-%m-%dT%H:%M:%SZ} (the close of the first stored hour): "
            "ask for a later `at`, or omit it for now."
        )
    else:
        detail = (
            f"No market caps are stored for the hour before {at:%Y-%m-%dT%H:%M:%SZ} (a gap in the "
            "data); the earliest ranking is at "
            f"{earliest:%Y-%m-%dT%H:%M:%SZ}."
        )
    raise ProblemError(NO_DATA_AT, detail, extra={"at": _iso(at), "earliest": _iso(earliest)})


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


_SCREENER_FILTERS = {f"{f}_{op}": (f, op) for f in screener.FIELDS for op in ("lt", "gt", "lte", "gte")}
# Short aliases a user would type: change_gt → change_pct_gt.
_SCREENER_FILTERS.update({f"change_{op}": ("change_pct", op) for op in ("lt", "gt", "lte", "gte")})
_SORTS = tuple(screener.FIELDS) + tuple(f"-{f}" for f in screener.FIELDS)


class ScreenerView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "screener"
    cache_name = "screener"
    credit_cost = 2
    allowed_params = frozenset({"timeframe", "sort", "limit", "cursor", "offset", *_SCREENER_FILTERS})

    @extend_schema(
        operation_id="screener_list",
        summary="Coins whose latest indicators match filters",
        description=(
            "Filters over the precomputed latest indicators (newest closed candle of each coin, refreshed "
            "after each roll-up; parameters fixed: SMA/EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2, "
            "ATR 14, volatility 30). Each field F takes `F_lt`, `F_gt`, `F_lte`, `F_gte`; `change_*` is "
            "short for `change_pct_*`. Fields: "
            + "; ".join(f"`{k}` {v}" for k, v in screener.FIELDS.items())
            + " A coin with a null field never matches a filter on it. Sorted by `sort` (nulls last), "
            "then by id. " + docs.PAGING_DOC + docs.OFFSET_DOC + " 2 credits."
        ),
        tags=["indicators"],
        parameters=[
            docs.TIMEFRAME,
            docs.param(
                "sort",
                docs.enum_schema(list(_SORTS), default="-volume_24h"),
                "Sort field; a leading `-` sorts descending.",
            ),
            docs.limit(100, 1000),
            docs.CURSOR,
            docs.OFFSET,
            *[
                docs.param(name, {"type": "number"}, f"{field} {op} value.")
                for name, (field, op) in _SCREENER_FILTERS.items()
            ],
        ],
        responses={200: docs.Screener, **docs.errors(not_modified=True)},
        examples=[
            OpenApiExample(
                "oversold",
                response_only=True,
                value={
                    "timeframe": "1h",
                    "next_cursor": None,
                    "next_offset": None,
                    "data": [
                        {
                            "id": "solana",
                            "symbol": "sol",
                            "name": "Solana",
                            "time": "2026-11-24T03:00:00Z",
                            **dict.fromkeys(screener.FIELDS),
                            "close": 142.1,
                            "rsi": 27.4,
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request):
        query = self.query(request)
        timeframe = params.timeframe(query)
        sort = params.choice(query, "sort", choices=_SORTS, default="-volume_24h")
        limit = params.integer(query, "limit", default=100, minimum=1, maximum=1000)
        filters = []
        for name in sorted(set(query.keys()) & set(_SCREENER_FILTERS)):
            field, op = _SCREENER_FILTERS[name]
            value = params.number(query, name)
            assert value is not None  # present: number() only returns None for an absent parameter
            filters.append((field, op, value))
        context = [timeframe, sort]
        after = params.key_cursor(query, kind="screener", context=context, spec=("num", "id"))
        offset = params.offset(query)
        self.require_timeframe(request, timeframe)
        column = sort.lstrip("-")

        def compute() -> caching.Cached:
            rows = selectors.screener_page(
                timeframe=timeframe,
                filters=filters,
                sort=sort,
                after=after,
                offset=offset or 0,
                limit=limit + 1,
            )
            more = len(rows) > limit
            cols = ("id", "symbol", "name", "time", *screener.FIELDS)
            data = [dict(zip(cols, r, strict=True)) for r in rows[:limit]]
            cursor = None
            if more:
                cursor = params.encode_key_cursor("screener", context, [data[-1][column], data[-1]["id"]])
            body = dumps(
                {
                    "timeframe": timeframe,
                    "data": data,
                    "next_cursor": cursor,
                    "next_offset": _next_offset(offset, after, limit, more),
                }
            )
            return caching.answer(body)

        parts = (timeframe, sort, limit, None if after is None else tuple(after), offset, tuple(filters))
        hit = self.cached(parts=parts, version_key=caching.screener_key(timeframe), compute=compute)
        return _paged(request, hit)


# --- reads over the stored candles: several coins, a day's close, market charts ------------------


def _ids_digest(ids: list[str]) -> str:
    """What a multi-coin cursor remembers of ``ids`` (the full list would not fit in a cursor)."""
    return hashlib.blake2b(",".join(ids).encode(), digest_size=8).hexdigest()


def _multi_rows_of(hit: caching.Cached) -> int:
    """Rows in a cached multi-coin candle body: each row, and nothing else, starts with ``{"coin":``."""
    return hit.body.count(b'{"coin":')


def _us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


_MULTI_EXAMPLE = {
    "timeframe": "1h",
    "ids": ["bitcoin", "ethereum"],
    "data": [
        {
            "coin": "bitcoin",
            "time": "2026-11-24T04:00:00Z",
            "open": 91000.0,
            "high": 91500.0,
            "low": 90800.0,
            "close": 91234.5,
            "volume": None,
            "volume_24h": 3.2e10,
            "closed": False,
            "filled": False,
        },
        {
            "coin": "ethereum",
            "time": "2026-11-24T04:00:00Z",
            "open": 3010.0,
            "high": 3030.0,
            "low": 2990.0,
            "close": 3021.5,
            "volume": None,
            "volume_24h": 1.1e10,
            "closed": False,
            "filled": False,
        },
    ],
    "next_cursor": None,
}
_MULTI_DESCRIPTION = (
    f"Candles of up to {params.MAX_CANDLE_IDS} coins in one call: the rows of "
    "`GET /v1/coins/{coin_id}/candles` with the coin id first, coin by coin in the order of `ids`, each "
    "coin's candles with `start <= time < end` newest first (`order=desc`, default) or oldest first. "
    f"Up to `limit` ({params.MAX_CANDLES} max) rows per page in all; follow `next_cursor` (or the `Link` "
    "header) for the rest. Every id must be a coin (404 `not-found` with the unknown ones in `missing`, "
    "costing nothing); a coin without candles in the range simply has no rows. "
    "Credits: 1 per started 1,000 rows returned (min. 1); a 304 costs 0. "
)


class MultiCandleListView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "candles_multi"
    cache_name = "candles_multi"
    credit_cost = 1
    allowed_params = frozenset({"ids", "timeframe", "start", "end", "limit", "order", "cursor"})

    def get_credit_cost(self, request) -> int:
        return _page_cost(request)

    @extend_schema(
        operation_id="candles_multi_list",
        summary="OHLCV candles of several coins",
        description=_MULTI_DESCRIPTION + "CSV: `GET /v1/candles.csv`. " + docs.RESPONSE_HEADERS_DOC,
        tags=["candles"],
        parameters=[*docs.MULTI_CANDLE_RANGE, docs.IF_NONE_MATCH],
        responses={
            200: docs.MultiCandleList,
            **docs.errors(not_modified=True),
            (404, docs.PROBLEM_JSON): docs.UNKNOWN_IDS_404,
        },
        examples=[OpenApiExample("two coins", response_only=True, value=_MULTI_EXAMPLE)],
    )
    def get(self, request):
        query = self.query(request)
        ids = params.id_list(query, "ids", maximum=params.MAX_CANDLE_IDS, required=True)
        assert ids is not None  # required: id_list refuses an absent or empty ids
        timeframe = params.timeframe(query)
        start, end = params.time_range(query)
        limit = params.integer(
            query, "limit", default=params.DEFAULT_CANDLES, minimum=1, maximum=params.MAX_CANDLES
        )
        order = params.choice(query, "order", choices=("desc", "asc"), default="desc")
        context = [order, _ids_digest(ids)]
        key = params.key_cursor(query, kind="candles", context=context, spec=("id", "int"))
        after = None
        if key is not None:
            if key[0] not in ids or not _us(params.MIN_TIME) <= key[1] <= _us(params.MAX_TIME):
                params.fail("cursor", params.NOT_A_CURSOR)
            after = (ids.index(key[0]) + 1, _time(key[1]))
        refs = selectors.coin_refs_many(ids)
        missing = [i for i in ids if i not in refs]
        if missing:
            names = ", ".join(repr(i) for i in missing[:10]) + (" …" if len(missing) > 10 else "")
            raise ProblemError(
                NOT_FOUND,
                f"No coin with id {names}." if len(missing) == 1 else f"No coins with ids {names}.",
                extra={"missing": missing},
            )
        self.require_timeframe(request, timeframe)
        coins = [(refs[i][0], i) for i in ids]

        def compute() -> caching.Cached:
            more, rows_closed, last, data_json = selectors.candles_multi_page_json(
                coins=coins, timeframe=timeframe, start=start, end=end, after=after, order=order, limit=limit
            )
            cursor = None
            if more and last is not None:
                cursor = params.encode_key_cursor("candles", context, [last[0], _us(last[1])])
            head = dumps({"timeframe": timeframe, "ids": ids})[:-1]
            body = head + b',"data":' + data_json.encode() + b',"next_cursor":' + dumps(cursor) + b"}"
            return caching.answer(body, long=_range_is_closed(timeframe, end, rows_closed, timezone.now()))

        parts = (tuple(ids), timeframe, start, end, limit, order, after)
        hit = self.cached(
            parts=parts,
            version_key=[versions.candles_key(pk, timeframe) for pk, _ in coins],
            compute=compute,
        )
        charge(request, page_credits(_multi_rows_of(hit)))
        if request.accepted_renderer.format == "csv":
            return _csv_answer(
                request,
                hit,
                ("coin", *selectors.CANDLE_COLUMNS),
                lambda doc: f"candles-{doc['timeframe']}.csv",
            )
        response = caching.respond(request, hit)
        _link_next(request, _cursor_of(hit), response)
        return response


class MultiCandleCSVView(MultiCandleListView):
    """The candles of ``MultiCandleListView`` as CSV (its own operation, as for one coin)."""

    renderer_classes = [CSVRenderer]

    @extend_schema(
        operation_id="candles_multi_csv",
        summary="OHLCV candles of several coins as CSV",
        description=(
            "The rows of `GET /v1/candles` as `text/csv` with a header row "
            f"(coin, {', '.join(selectors.CANDLE_COLUMNS)}); booleans as `true`/`false`, null as an empty "
            'field. Same parameters, paging (`Link: rel="next"` header), caching and credits. Errors stay '
            "`application/problem+json`."
        ),
        tags=["candles"],
        parameters=[*docs.MULTI_CANDLE_RANGE, docs.IF_NONE_MATCH],
        responses={
            (200, "text/csv"): OpenApiResponse(
                {
                    "type": "string",
                    "example": "coin," + ",".join(selectors.CANDLE_COLUMNS) + "\n",
                },
                description="CSV with a header row.",
            ),
            **docs.errors(not_modified=True),
            (404, docs.PROBLEM_JSON): docs.UNKNOWN_IDS_404,
        },
    )
    def get(self, request):
        return super().get(request)


class CoinHistoryView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "coin_history"
    cache_name = "coin_history"
    credit_cost = 1
    allowed_params = frozenset({"date"})

    @extend_schema(
        operation_id="coins_history_retrieve",
        summary="Price, market cap and 24h volume of a coin at a day's close",
        description=(
            "The values at the close of the UTC day `date`: from the day's 1d candle, or — where there is "
            "none (yet) — from the last candle of that day (`timeframe` says which, `as_of` when the values "
            "hold: the day's end once it is over and complete). Today answers the latest values so far "
            "(`closed: false`). A date without data — before the coin's first candle, after its latest, "
            "in the future or in a gap — is a 404 `no-data` naming the dates that have data "
            "(`earliest_date`, `latest_date`). 1 credit."
        ),
        tags=["coins"],
        parameters=[docs.COIN_ID, docs.DATE],
        responses={
            200: docs.History,
            **docs.errors(not_modified=True),
            (404, docs.PROBLEM_JSON): docs.NO_DATA_404,
        },
        examples=[
            OpenApiExample(
                "a past day",
                response_only=True,
                value={
                    "id": "bitcoin",
                    "symbol": "btc",
                    "name": "Bitcoin",
                    "date": "2026-11-20",
                    "price": 91234.5,
                    "market_cap": 1.81e12,
                    "volume_24h": 3.2e10,
                    "as_of": "2026-11-21T00:00:00Z",
                    "timeframe": "1d",
                    "closed": True,
                },
            )
        ],
    )
    def get(self, request, coin_id: str):
        query = self.query(request)
        coin_pk, symbol, name = self.coin_or_404(coin_id)
        day = params.date_value(query, "date")
        now = timezone.now()

        def compute() -> caching.Cached:
            row = None
            day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if params.MIN_TIME <= day_start <= now:
                row = selectors.day_close(coin_id=coin_pk, day=day_start)
            if row is None:
                raise _no_data(coin_id, coin_pk, day, now)
            timeframe, at, close, market_cap, volume_24h, closed = row
            body = dumps(
                {
                    "id": coin_id,
                    "symbol": symbol,
                    "name": name,
                    "date": day,
                    "price": close,
                    "market_cap": market_cap,
                    "volume_24h": volume_24h,
                    "as_of": at,
                    "timeframe": timeframe,
                    "closed": closed,
                }
            )
            return caching.answer(body, long=closed and at == day_start + timedelta(days=1))

        hit = self.cached(
            parts=(coin_pk, day),
            version_key=[versions.candles_key(coin_pk, tf) for tf in selectors.DAY_TIMEFRAMES],
            compute=compute,
        )
        return caching.respond(request, hit)


def _no_data(coin_id: str, coin_pk: int, day: date, now: datetime) -> ProblemError:
    """The ``no-data`` problem of a date without data, naming the dates that have data (1 query)."""
    first, last = selectors.candles_span(coin_id=coin_pk)
    first_day = first.date() if first is not None else None
    last_day = last.date() if last is not None else None
    if first_day is None or last_day is None:
        detail = f"No data for {coin_id} yet."
    elif day > now.date():
        detail = f"{day} is in the future: data for {coin_id} runs from {first_day} to {last_day}."
    elif day < first_day:
        detail = f"No data for {coin_id} on {day}: data starts on {first_day} (latest: {last_day})."
    else:
        detail = f"No data for {coin_id} on {day} (a gap): data runs from {first_day} to {last_day}."
    return ProblemError(NO_DATA, detail, extra={"earliest_date": first_day, "latest_date": last_day})


#: ``interval=auto``: the finest timeframe for a range up to this long (CoinGecko's steps).
AUTO_INTERVALS: tuple[tuple[str, timedelta | None], ...] = (
    ("5m", timedelta(days=1)),
    ("1h", timedelta(days=90)),
    ("1d", None),
)


def auto_interval(start: datetime, end: datetime | None, now: datetime) -> str:
    """The timeframe of ``interval=auto``: by the range's length (:data:`AUTO_INTERVALS`), then coarser
    while the candles of that timeframe no longer reach back to ``start`` (``CANDLE_RETENTION_DAYS``)."""
    span = (end or now) - start
    keep = partitions.retention()
    steps = [tf for tf, upto in AUTO_INTERVALS if upto is None or span <= upto]
    for tf in steps:
        kept = keep.get(tf)
        if kept is None or start >= now - kept:
            return tf
    return steps[-1]


def _chart_range(query, now: datetime) -> tuple[datetime, datetime | None, str]:
    """(start, end or None, timeframe) of a market chart request."""
    start, end = params.time_range(query)
    interval = params.choice(query, "interval", choices=("auto", *TIMEFRAMES), default="auto")
    span_end = end
    if start is None:  # a day before the end (to the minute, so that repeated calls share an answer)
        span_end = (end or now).replace(second=0, microsecond=0)
        start = max(span_end - timedelta(days=1), params.MIN_TIME)
    timeframe = auto_interval(start, span_end, now) if interval == "auto" else interval
    return start, end, timeframe


class MarketChartView(caching.ResponseCacheMixin, MarketDataView):
    endpoint_name = "market_chart"
    cache_name = "market_chart"
    credit_cost = 1
    allowed_params = frozenset({"start", "end", "interval"})

    def get_credit_cost(self, request) -> int:
        """The most points the range can hold (every bucket present), priced like candle rows."""
        now = timezone.now()
        try:
            start, end, timeframe = _chart_range(request.query_params, now)
        except ValidationError:
            return 1  # refused by the view: costs nothing
        buckets = max(0, ((end or now) - start) // TIMEFRAME_DELTA[timeframe]) + 2
        return page_credits(min(buckets, params.MAX_CHART_POINTS))

    @extend_schema(
        operation_id="coins_market_chart_retrieve",
        summary="Price, market cap and 24h volume series of a coin",
        description=(
            "Price (the close), market cap and rolling 24h volume of the stored candles of `interval`, "
            "one point per candle whose values hold at a time in `start` … `end` (both inclusive), oldest "
            "first. A point's `time` is when its values hold: its candle's end (the open candle's: its "
            "last update). `interval=auto` (default) picks the candle width by the range's length like "
            "CoinGecko's market_chart: 5m up to 1 day, 1h up to 90 days, 1d beyond (`interval` in the "
            "answer says which). At most "
            f"{params.MAX_CHART_POINTS:,} points: a range holding more at the chosen interval is a 400 "
            "naming `interval` (shorten the range or choose a coarser interval). "
            "Credits: 1 per started 1,000 points returned (min. 1); a 304 costs 0."
        ),
        tags=["coins"],
        parameters=[docs.COIN_ID, docs.CHART_START, docs.CHART_END, docs.INTERVAL, docs.IF_NONE_MATCH],
        responses={200: docs.MarketChart, **docs.errors(not_found=True, not_modified=True)},
        examples=[
            OpenApiExample(
                "hourly",
                response_only=True,
                value={
                    "coin": "bitcoin",
                    "interval": "1h",
                    "start": "2026-11-23T05:00:00Z",
                    "end": None,
                    "data": [
                        {
                            "time": "2026-11-23T06:00:00Z",
                            "price": 91234.5,
                            "market_cap": 1.81e12,
                            "volume_24h": 3.2e10,
                        }
                    ],
                },
            )
        ],
    )
    def get(self, request, coin_id: str):
        query = self.query(request)
        coin_pk, _, _ = self.coin_or_404(coin_id)
        now = timezone.now()
        start, end, timeframe = _chart_range(query, now)
        self.require_timeframe(request, timeframe)

        def compute() -> caching.Cached:
            count, rows_closed, data_json = selectors.market_chart_json(
                coin_id=coin_pk, timeframe=timeframe, start=start, end=end, limit=params.MAX_CHART_POINTS + 1
            )
            if count > params.MAX_CHART_POINTS:
                params.fail(
                    "interval",
                    f"the range holds more than {params.MAX_CHART_POINTS} points at {timeframe}: shorten it "
                    "or choose a coarser interval",
                )
            head = dumps({"coin": coin_id, "interval": timeframe, "start": start, "end": end})[:-1]
            body = head + b',"data":' + data_json.encode() + b"}"
            return caching.answer(body, long=_range_is_closed(timeframe, end, rows_closed, now))

        hit = self.cached(
            parts=(coin_pk, timeframe, start, end),
            version_key=versions.candles_key(coin_pk, timeframe),
            compute=compute,
        )
        charge(request, page_credits(_rows_of(hit)))
        return caching.respond(request, hit)
