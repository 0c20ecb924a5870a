"""Market events for the push channel (``GET /v1/stream``): what the write path publishes, and the
current state a stream starts from.

The write path publishes once per ingestion write cycle, after it commits
(:func:`market_events_publish`, called from ``ingestion.pipeline``): one ``price`` event per coin
whose price changed (the fields of ``GET /v1/prices``, read with the same selector), and one
``candle`` event per candle of every timeframe (``TIMEFRAMES``) of the current or the previous
bucket whose values changed in the cycle — the open candle as it changes, and once more when it is
closed (``"closed": true``). Events are appended to ONE Redis stream (:func:`stream_key`, XADD with
``MINID`` trimming: entries older than ``STREAM_BUFFER_SECONDS`` + a margin go), whose entry ids
are the events' ids. The stream server (``apiplatform.streaming``) reads it with one XREAD loop per
process and fans the events out to its clients.

Entry fields: ``e`` event name, ``c`` coin (upstream id), ``ch`` channel (``prices`` or
``candles:<timeframe>``), ``d`` the event's JSON data.

Redis down: the events of that cycle are lost to the stream (the write itself has committed); a
client that reconnects later gets ``reset`` and the current state if it missed more than the buffer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.conf import settings

from apiplatform import redis_access
from marketdata import selectors
from marketdata.models import TIMEFRAME_DELTA, TIMEFRAMES
from marketdata.services import bucket_floor

logger = logging.getLogger(__name__)

EVENT_PRICE = "price"
EVENT_CANDLE = "candle"
PRICES_CHANNEL = "prices"
CANDLES_PREFIX = "candles:"
#: Entries are kept this much longer than the buffer window, so that a stream server that starts
#: up (and loads the window from Redis) finds all of it.
TRIM_MARGIN_MS = 60_000
_XADD_CHUNK = 1000


def stream_key() -> str:
    """The Redis stream of market events: ``<prefix>:stream:market``."""
    return redis_access.key("stream", "market")


def candle_channel(timeframe: str) -> str:
    return f"{CANDLES_PREFIX}{timeframe}"


def channels() -> tuple[str, ...]:
    """Every channel a client may subscribe to: ``prices`` and ``candles:<tf>`` per timeframe."""
    return (PRICES_CHANNEL, *(candle_channel(tf) for tf in TIMEFRAMES))


def channel_timeframe(channel: str) -> str | None:
    """The timeframe of a candle channel (None for ``prices``)."""
    return channel[len(CANDLES_PREFIX) :] if channel.startswith(CANDLES_PREFIX) else None


@dataclass(frozen=True, slots=True)
class MarketEvent:
    event: str  # EVENT_PRICE or EVENT_CANDLE
    coin: str  # upstream id
    channel: str
    data: bytes  # the JSON object sent as the event's data


def _price_events(upstream_ids: Sequence[str]) -> list[MarketEvent]:
    if not upstream_ids:
        return []
    text, _found = selectors.prices_json(list(upstream_ids))
    out = []
    for coin, fields in orjson.loads(text).items():
        out.append(MarketEvent(EVENT_PRICE, coin, PRICES_CHANNEL, orjson.dumps({"coin": coin, **fields})))
    return out


def _candle_data(coin: str, timeframe: str, candle_json: str) -> bytes:
    return orjson.dumps({"coin": coin, "timeframe": timeframe, **orjson.loads(candle_json)})


def events_append(events: Sequence[MarketEvent]) -> list[str]:
    """Append events to the market stream (pipelined XADDs, trimmed to the buffer window by
    ``MINID``) and return their ids. Raises the Redis error if Redis fails."""
    if not events:
        return []
    window_ms = int(settings.STREAM_BUFFER_SECONDS * 1000) + TRIM_MARGIN_MS
    client = redis_access.client("default")
    key = stream_key()
    ids: list[str] = []
    for start in range(0, len(events), _XADD_CHUNK):
        minid = int(time.time() * 1000) - window_ms
        pipe = client.pipeline(transaction=False)
        for ev in events[start : start + _XADD_CHUNK]:
            pipe.xadd(
                key,
                {"e": ev.event, "c": ev.coin, "ch": ev.channel, "d": ev.data},
                minid=minid,
                approximate=True,
            )
        ids += [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]
    return ids


def market_events_publish(
    *, price_ids: Sequence[str], coin_ids: Sequence[int], since: datetime, now: datetime
) -> int:
    """THE publishing hook of the write path (after a write cycle has committed): ``price`` events
    for ``price_ids`` (upstream ids whose price changed), ``candle`` events for the candles of
    ``coin_ids`` in the current and previous bucket of every timeframe written at or after
    ``since``. Returns the number of events appended; never raises (logs instead)."""
    try:
        events: list[MarketEvent] = []
        if coin_ids:
            ids = list(coin_ids)
            for tf in TIMEFRAMES:
                current = bucket_floor(tf, now)
                rows = selectors.candles_changed_json(
                    coin_ids=ids,
                    timeframe=tf,
                    bucket_starts=[current - TIMEFRAME_DELTA[tf], current],
                    since=since,
                )
                channel = candle_channel(tf)
                events += [MarketEvent(EVENT_CANDLE, c, channel, _candle_data(c, tf, j)) for c, j in rows]
        events += _price_events(price_ids)
        with redis_access.breaker("default").guard():
            return len(events_append(events))
    except redis_access.ERRORS:
        logger.warning("market events not published: Redis unavailable")
    except Exception:  # the write has committed: publishing must never fail it
        logger.exception("market events not published")
    return 0


def current_state(*, coins: Sequence[str], subscribed: Sequence[str]) -> list[MarketEvent]:
    """What a stream starts from (a new connection, or one that missed more than the buffer): the
    latest price of each coin (``prices`` channel) and the newest candle of each subscribed
    timeframe (2 queries at most)."""
    events: list[MarketEvent] = []
    timeframes = [tf for ch in subscribed if (tf := channel_timeframe(ch))]
    if timeframes:
        for coin, tf, candle in selectors.candles_latest_json(
            upstream_ids=list(coins), timeframes=timeframes
        ):
            events.append(MarketEvent(EVENT_CANDLE, coin, candle_channel(tf), _candle_data(coin, tf, candle)))
    if PRICES_CHANNEL in subscribed:
        events += _price_events(coins)
    return events
