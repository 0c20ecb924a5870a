"""``GET /v1/stream``: prices and candles pushed as Server-Sent Events (docs/stream.md).

Thin like the other views: the gateway (``PublicAPIView``) authenticates the key, checks the plan,
limits and credits (the open costs ``credit_cost``) and meters; this view validates the subscription
(400 before anything is streamed), checks the plan's timeframes (403), takes a stream slot
(``apiplatform.streaming.stream_open``: 429 ``stream-limit-reached`` over the plan's
``concurrent_streams``) and answers ``text/event-stream`` with the hub's events. It streams only
under the ASGI server (uvicorn, ``apiplatform.asgi:application``); the WSGI web process answers 503
naming the stream server's URL.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer

from apiplatform import streaming
from apiplatform.middleware import never_compress
from apiplatform.problems import ProblemError
from marketdata import events, selectors
from marketdata.api import docs, params
from marketdata.api.views import MarketDataView
from marketdata.models import TIMEFRAMES


class EventStreamRenderer(BaseRenderer):
    """Negotiation only (``Accept: text/event-stream``): the view streams the events itself."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else b""


def channel_list(query) -> list[str]:
    """``channels``: comma-separated, ``prices`` and/or ``candles:<timeframe>`` (default ``prices``)."""
    values = query.getlist("channels") or ["prices"]
    valid = events.channels()
    out: list[str] = []
    for value in values:
        if value == "":
            params.fail("channels", "must not be empty: e.g. prices,candles:1m")
        for channel in value.split(","):
            if channel not in valid:
                params.fail("channels", f"{channel[:50]!r} is not a channel: use {', '.join(valid)}")
            out.append(channel)
    return list(dict.fromkeys(out))


_EXAMPLE = (
    ": candlestack stream\n\nretry: 3000\n"
    'id: 1764449400123-0\nevent: price\ndata: {"coin":"bitcoin","price":91234.5,"market_cap":1.81e12,'
    '"volume_24h":3.2e10,"change_24h_pct":1.8,"last_updated":"2026-11-29T20:49:31Z"}\n\n'
    'id: 1764449400123-1\nevent: candle\ndata: {"coin":"bitcoin","timeframe":"1m",'
    '"time":"2026-11-29T20:49:00Z",'
    '"open":91200.0,"high":91250.0,"low":91190.0,"close":91234.5,"volume":null,"volume_24h":3.2e10,'
    '"closed":false,"filled":false}\n\n'
    'id: 1764449415000-0\nevent: heartbeat\ndata: {"time":"2026-11-29T20:50:15.000Z"}\n\n'
)


class StreamView(MarketDataView):
    endpoint_name = streaming.ENDPOINT
    credit_cost = 1
    renderer_classes = [*MarketDataView.renderer_classes, EventStreamRenderer]
    allowed_params = frozenset({"ids", "channels", "last_event_id"})

    @extend_schema(
        operation_id="stream",
        summary="Live prices and candles (Server-Sent Events)",
        description=(
            "A `text/event-stream` of `price` events (the fields of `GET /v1/prices` plus `coin`) when a "
            "coin's price changes and `candle` events (the open candle of each subscribed timeframe as it "
            "changes, once more with `closed: true`), a `heartbeat` every "
            f"{int(settings.STREAM_HEARTBEAT_SECONDS)} s, each with an `id`. A new connection first gets the "
            "current state (latest price, newest candle per timeframe). Reconnecting with `Last-Event-ID` "
            "(header, or `last_event_id`) within the buffer window "
            f"({int(settings.STREAM_BUFFER_SECONDS)} s) delivers exactly the missed events, in order, then "
            "live ones; beyond it a `reset` event and the current state. The stream may end with an `end` "
            "event (`reason`: `api-key-revoked`, `api-key-expired`, `api-key-unknown`, `quota-exceeded`, "
            "`slow-client`, `lease-lost`). Served by the stream server (`STREAM_PUBLIC_URL`, uvicorn); the "
            "web server answers 503 `stream-unavailable`. Credits: 1 on open, then "
            f"{settings.STREAM_CREDITS_PER_MINUTE} per minute connected. Concurrent streams per "
            "organization: the plan's `concurrent_streams` (429 `stream-limit-reached`). See docs/stream.md."
        ),
        tags=["stream"],
        parameters=[
            OpenApiParameter(
                "ids",
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": params.ID_PATTERN},
                    "minItems": 1,
                    "maxItems": settings.STREAM_MAX_IDS,
                },
                OpenApiParameter.QUERY,
                required=True,
                style="form",
                explode=False,
                description=f"Coin ids, comma-separated, at most {settings.STREAM_MAX_IDS}; each must exist.",
            ),
            OpenApiParameter(
                "channels",
                {"type": "array", "items": docs.enum_schema(list(events.channels())), "default": ["prices"]},
                OpenApiParameter.QUERY,
                style="form",
                explode=False,
                description="`prices` and/or `candles:<timeframe>` ("
                + ", ".join(TIMEFRAMES)
                + "), comma-separated. Timeframes outside the plan: 403 `plan-upgrade-required`.",
            ),
            OpenApiParameter(
                "last_event_id",
                str,
                OpenApiParameter.QUERY,
                description="Resume after this event id (for clients that cannot send the "
                "`Last-Event-ID` header).",
            ),
            OpenApiParameter("format", exclude=True),  # one representation: negotiation only
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="Resume after this event id (browsers' EventSource sends it when reconnecting).",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response={"type": "string"},
                description="The event stream (`id`, `event`, `data` lines; `data` is one JSON object).",
                examples=[OpenApiExample("events", value=_EXAMPLE, media_type="text/event-stream")],
            ),
            (429, docs.PROBLEM_JSON): docs.problem(
                "The plan's concurrent streams are all open (`stream-limit-reached`), or a rate limit "
                "(`rate-limited`), the monthly quota (`quota-exceeded`) or the failed-authentication limit "
                "(`auth-rate-limited`) is reached.",
                None,
            ),
            (503, docs.PROBLEM_JSON): docs.problem(
                "The event source is unreachable, or this is not the stream server (`stream-unavailable`).",
                None,
            ),
            **docs.errors(),
        },
    )
    def get(self, request):
        query = self.query(request)
        ids = params.id_list(query, "ids", maximum=settings.STREAM_MAX_IDS, required=True) or []
        channels = channel_list(query)
        known = selectors.coins_known(ids)
        unknown = [i for i in ids if i not in known]
        if unknown:
            params.fail("ids", f"unknown coin ids: {', '.join(u[:50] for u in unknown[:10])}")
        for channel in channels:
            timeframe = events.channel_timeframe(channel)
            if timeframe is not None:
                self.require_timeframe(request, timeframe)
        if not isinstance(request._request, ASGIRequest):
            raise ProblemError(
                streaming.STREAM_UNAVAILABLE,
                f"Streams are served by the stream server: {settings.STREAM_PUBLIC_URL}/v1/stream",
                extra={"stream_url": f"{settings.STREAM_PUBLIC_URL}/v1/stream"},
            )
        last_event_id = request.META.get("HTTP_LAST_EVENT_ID") or query.get("last_event_id") or None
        principal = request.auth
        connection_id = streaming.stream_open(principal)
        try:
            response = streaming.EventStreamResponse(
                streaming.stream_events(
                    principal=principal,
                    connection_id=connection_id,
                    coins=ids,
                    channels=channels,
                    last_event_id=last_event_id,
                ),
                content_type="text/event-stream; charset=utf-8",
            )
        except Exception:
            streaming.stream_abandon(principal, connection_id)
            raise
        response["Cache-Control"] = "no-cache, no-store"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return never_compress(response)
