"""The stream server's engine (``GET /v1/stream``, Server-Sent Events, docs/stream.md).

A composition point (like ``apiplatform.gateway``): it joins marketdata's events, billing's stream
slots and credits, and accounts' key cache. The view (``marketdata.api.stream``) authenticates and
admits the request through the gateway, then calls :func:`stream_open` (a slot of the plan's
``concurrent_streams``, or a 429 problem before anything is streamed) and streams
:meth:`Hub.stream`.

One :class:`Hub` per server process (per event loop):

* **One subscription to Redis.** A single asyncio task reads the market stream
  (``marketdata.events.stream_key()``) with ``XREAD BLOCK`` on one ``redis.asyncio`` connection and
  fans each event out to the clients subscribed to its coin and channel: per-client bounded queues
  (``STREAM_CLIENT_QUEUE``). No Redis connection per client. Each event's SSE frame is built once
  (bytes shared by every client), and the reader reads on without blocking until a publish is
  drained before it wakes the clients: each client gets one write per publish, not one per event.
  A client whose queue is full (it does not read fast enough) gets a final ``end`` event
  (``slow-client``) and is disconnected rather than buffered without bound; its ``end`` carries the
  id of the last event it received, so it resumes exactly with ``Last-Event-ID``.
* **The buffer window.** The hub keeps the last ``STREAM_BUFFER_SECONDS`` of events per coin in
  memory (loaded from Redis when the hub starts, then kept by the reader). A client reconnecting
  with ``Last-Event-ID`` inside the window gets exactly the events it missed (its coins, its
  channels), in order, then live events — replay and subscription happen in one step of the event
  loop, so nothing falls between them and nothing comes twice. Older (or unknown) ids get a
  ``reset`` event and the current state.
* **Housekeeping** (one task): renews the slots' leases of all open streams in one Redis call,
  charges ``STREAM_CREDITS_PER_MINUTE`` per minute connected, ends streams whose key was revoked,
  expired or deleted (checked every ``STREAM_KEY_CHECK_SECONDS`` through the key cache: the stream
  ends within ``STREAM_KEY_CHECK_SECONDS`` + ``KEY_LOCAL_CACHE_TTL`` of the revocation), releases
  the slots of streams that ended, and trims the buffer. A third task wakes the clients whose
  heartbeat is due (one timer for all of them).
* **The connection** (``apiplatform.asgi``): the view answers an :class:`EventStreamResponse`; the
  stream server's handler sends its headers, lets the request's thread and database connection go,
  and writes the chunks of :meth:`Hub.stream` to the ASGI connection itself (:func:`serve`).

Event ids are the Redis stream entry ids (``<ms>-<seq>``), so they are the same in every server
process: a client may reconnect to any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from django.conf import settings
from django.db import connections
from django.http import StreamingHttpResponse

from accounts import keycache
from accounts.principal import KeyPrincipal
from apiplatform import problems, redis_access
from apiplatform.gateway import PLAN_UPGRADE_REQUIRED, upgrade_url
from apiplatform.problems import ProblemError
from billing import services as billing_services
from billing import streams as billing_streams
from billing.gate import now_us
from marketdata import events

logger = logging.getLogger(__name__)

#: The endpoint name of the stream (plan gating, metering: the open and the minutes connected).
ENDPOINT = "stream"

STREAM_LIMIT_REACHED = problems.register(
    "stream-limit-reached",
    429,
    "Too many open streams",
    "The organization already holds open as many streams (`GET /v1/stream`) as its plan allows "
    "(`limit`; all its keys together). Close one, or upgrade (`upgrade_url`). A stream whose client "
    "vanished without closing frees its slot within `STREAM_SLOT_LEASE_SECONDS` (30 s).",
)
STREAM_UNAVAILABLE = problems.register(
    "stream-unavailable",
    503,
    "Stream unavailable",
    "The stream could not be opened: its event source (Redis) is unreachable, or this server does not "
    "serve streams (`GET /v1/stream` is served by the stream server, `STREAM_PUBLIC_URL`). Retry later.",
)

EventId = tuple[int, int]
_ZERO: EventId = (0, 0)
_FUTURE_TOLERANCE_MS = 60_000  # a Last-Event-ID this far ahead of the newest event is not ours
_DRAIN_READS = 20  # non-blocking reads after a blocking one before the clients are woken


def parse_id(text: str | bytes | None) -> EventId | None:
    """``"<ms>-<seq>"`` -> (ms, seq); None when it is not an event id."""
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    ms, sep, seq = text.strip().partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or len(ms) > 15 or len(seq) > 15:
        return None
    return int(ms), int(seq)


def _format_id(idt: EventId) -> str:
    return f"{idt[0]}-{idt[1]}"


SLOW_CLIENT_DETAIL = "The client did not read its events fast enough; reconnect with Last-Event-ID."


def frame(event_id: str, event: str, data: bytes) -> bytes:
    """One SSE event (``data`` is one line of JSON)."""
    return b"id: " + event_id.encode() + b"\nevent: " + event.encode() + b"\ndata: " + data + b"\n\n"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- opening a stream (sync: runs in the view) ------------------------------------------------------
def stream_open(principal: KeyPrincipal) -> str:
    """Take one of the organization's stream slots (plan ``concurrent_streams``, exact across
    processes) and return the new connection's id; a problem (429 ``stream-limit-reached``, 403
    ``plan-upgrade-required`` for a plan without streams, 503 when Redis is down) otherwise."""
    connection_id = uuid.uuid4().hex
    lease_ms = int(settings.STREAM_SLOT_LEASE_SECONDS * 1000)
    org = principal.organization_id
    try:
        result = billing_streams.slot_acquire(
            organization_id=org, connection_id=connection_id, lease_ms=lease_ms
        )
        if result.status == billing_streams.PLAN_UNKNOWN:  # no copy of the plan (or an old one)
            billing_services.organization_plan_load(organization_id=org, now_us=now_us())
            result = billing_streams.slot_acquire(
                organization_id=org, connection_id=connection_id, lease_ms=lease_ms
            )
    except redis_access.ERRORS:
        logger.warning("stream not opened: Redis unavailable")
        raise ProblemError(
            STREAM_UNAVAILABLE, "The stream's event source is unreachable; retry later."
        ) from None
    if result.status == 1:
        return connection_id
    if result.limit <= 0:
        raise ProblemError(
            PLAN_UPGRADE_REQUIRED,
            "Streams are not included in the organization's plan.",
            extra={"endpoint": ENDPOINT, "upgrade_url": upgrade_url()},
        )
    raise ProblemError(
        STREAM_LIMIT_REACHED,
        f"The plan allows {result.limit} concurrent streams and {result.open} are open.",
        extra={"limit": result.limit, "open": result.open, "upgrade_url": upgrade_url()},
        headers={"Retry-After": str(max(1, int(settings.STREAM_SLOT_LEASE_SECONDS)))},
    )


def stream_abandon(principal: KeyPrincipal, connection_id: str) -> None:
    """Give back a slot taken by :func:`stream_open` for a stream that will not start."""
    with contextlib.suppress(*redis_access.ERRORS):
        billing_streams.slot_release(organization_id=principal.organization_id, connection_id=connection_id)


# --- the hub ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Subscriber:
    """One open stream: what it wants, what waits to be sent, and why it ended."""

    connection_id: str
    organization_id: int
    key_id: str
    coins: frozenset[str]
    channels: frozenset[str]
    pending: deque[tuple[EventId, bytes]] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str = ""  # why the stream ends ("" while open)
    ended_detail: str = ""
    after: EventId = _ZERO  # skip events up to this id (a client resuming from a process ahead of ours)
    last_sent: EventId = _ZERO
    opened: float = field(default_factory=time.monotonic)
    next_beat: float = float("inf")  # when its next heartbeat is due (time.monotonic)
    minutes_charged: int = 0

    def offer(self, idt: EventId, data: bytes, limit: int) -> bool:
        """Queue an event; True when queued (the caller wakes the client once for a whole batch)."""
        if self.ended or idt <= self.after:
            return False
        if len(self.pending) >= limit:
            self.end("slow-client", SLOW_CLIENT_DETAIL)
            return False
        self.pending.append((idt, data))
        return True

    def end(self, reason: str, detail: str) -> None:
        if not self.ended:
            self.ended, self.ended_detail = reason, detail
            self.pending.clear()
            self.ready.set()


class Hub:
    """The process's one reader of the market stream and its clients (see the module docstring)."""

    def __init__(self) -> None:
        self.buffer: dict[str, deque[tuple[EventId, str, bytes]]] = {}
        self.by_coin: dict[str, set[Subscriber]] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.last: EventId = _ZERO  # the newest event read
        self.floor: EventId = _ZERO  # every event after this id is in the buffer
        self._releases: list[tuple[int, str]] = []
        self._started: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []
        self._redis: aioredis.Redis | None = None
        self.events_read = 0
        self.dropped_slow = 0

    # lifecycle
    async def ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            # an empty context: the tasks outlive the request that happened to start them
            ctx = contextvars.Context()
            self._tasks = [
                asyncio.get_running_loop().create_task(self._run(), context=ctx),
                asyncio.get_running_loop().create_task(self._housekeeping(), context=ctx),
                asyncio.get_running_loop().create_task(self._heartbeats(), context=ctx),
            ]
        await asyncio.shield(self._started)

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=30
            )
        return self._redis

    def _window_floor(self) -> EventId:
        return (int(time.time() * 1000 - settings.STREAM_BUFFER_SECONDS * 1000), 0)

    async def _load(self) -> None:
        """The buffer window from Redis (XRANGE in chunks), before the first XREAD."""
        floor = self._window_floor()
        self.floor = max(self.floor, floor)
        start = _format_id(floor)
        key = events.stream_key()
        while True:
            entries: Any = await self._client().xrange(key, min=start, max="+", count=5000)
            for entry_id, fields in entries:
                self._dispatch(entry_id, fields, set())
            if len(entries) < 5000:
                break
            start = "(" + entries[-1][0].decode()
        if self.last < floor:
            self.last = (floor[0], 0)

    async def _run(self) -> None:
        key = events.stream_key()
        delay = 0.5
        loaded = False
        while True:
            try:
                if not loaded:
                    await self._load()
                    loaded = True
                    if self._started is not None and not self._started.done():
                        self._started.set_result(None)
                reply: Any = await self._client().xread({key: _format_id(self.last)}, count=1000, block=5000)
                woken: set[Subscriber] = set()
                try:
                    for _ in range(_DRAIN_READS):
                        if not reply:
                            break
                        for _stream, entries in reply:
                            for entry_id, fields in entries:
                                self._dispatch(entry_id, fields, woken)
                        # the rest of the same publish (one pipeline of XADDs, but Redis answers a
                        # blocked XREAD after the first): read on without blocking, so that each
                        # client is woken, and written to, once for all of it
                        reply = await self._client().xread({key: _format_id(self.last)}, count=1000)
                finally:
                    for sub in woken:
                        sub.ready.set()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down or a bad entry: retry, never give up
                logger.warning("stream reader: retrying in %.1f s", delay, exc_info=True)
                if self._redis is not None:
                    with contextlib.suppress(Exception):
                        await self._redis.aclose()
                self._redis = None
                if not loaded and self._started is not None and not self._started.done():
                    self._started.set_exception(ConnectionError("the market stream is unreachable"))
                    self._started = None  # the next stream tries again
                    for task in self._tasks:
                        if task is not asyncio.current_task():
                            task.cancel()
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _dispatch(self, entry_id: bytes, fields: dict[bytes, bytes], woken: set[Subscriber]) -> None:
        """Buffer one event and queue it for the subscribed clients (added to ``woken``)."""
        idt = parse_id(entry_id)
        if idt is None or idt <= self.last:
            return
        self.last = idt
        self.events_read += 1
        coin = fields[b"c"].decode()
        channel = fields[b"ch"].decode()
        data = frame(entry_id.decode(), fields[b"e"].decode(), fields[b"d"])
        queue = self.buffer.get(coin)
        if queue is None:
            queue = self.buffer[coin] = deque()
        queue.append((idt, channel, data))
        subs = self.by_coin.get(coin)
        if subs:
            limit = settings.STREAM_CLIENT_QUEUE
            for sub in subs:
                if channel in sub.channels and sub.offer(idt, data, limit):
                    woken.add(sub)

    def _register(self, sub: Subscriber) -> None:
        self.subscribers[sub.connection_id] = sub
        for coin in sub.coins:
            self.by_coin.setdefault(coin, set()).add(sub)

    def _unregister(self, sub: Subscriber) -> None:
        if self.subscribers.pop(sub.connection_id, None) is None:
            return
        for coin in sub.coins:
            subs = self.by_coin.get(coin)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_coin[coin]
        self._releases.append((sub.organization_id, sub.connection_id))

    def _replay(self, sub: Subscriber, after: EventId) -> list[tuple[EventId, bytes]]:
        """The buffered events of ``sub``'s coins and channels after ``after``, in id order."""
        per_coin = []
        for coin in sub.coins:
            queue = self.buffer.get(coin)
            if queue:
                per_coin.append([(i, d) for i, ch, d in queue if i > after and ch in sub.channels])
        return list(heapq.merge(*per_coin, key=lambda item: item[0]))

    def _trim(self) -> None:
        floor = self._window_floor()
        if floor <= self.floor:
            return
        self.floor = floor
        for coin in list(self.buffer):
            queue = self.buffer[coin]
            while queue and queue[0][0] <= floor:
                queue.popleft()
            if not queue:
                del self.buffer[coin]

    # housekeeping
    async def _housekeeping(self) -> None:
        lease_ms = int(settings.STREAM_SLOT_LEASE_SECONDS * 1000)
        renew_every = settings.STREAM_SLOT_LEASE_SECONDS / 3
        last_renew = last_key_check = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, settings.STREAM_KEY_CHECK_SECONDS / 2, renew_every))
            try:
                now = time.monotonic()
                self._trim()
                if self._releases:
                    releases, self._releases = self._releases, []
                    await in_thread(_release, releases)
                await self._charge_minutes(now)
                if now - last_key_check >= settings.STREAM_KEY_CHECK_SECONDS:
                    last_key_check = now
                    await self._check_keys()
                if now - last_renew >= renew_every:
                    last_renew = now
                    leases: dict[int, list[str]] = {}
                    for sub in self.subscribers.values():
                        leases.setdefault(sub.organization_id, []).append(sub.connection_id)
                    lost = await in_thread(billing_streams.slots_renew, leases, lease_ms=lease_ms)
                    for connection_id in lost:
                        lost_sub = self.subscribers.get(connection_id)
                        if lost_sub is not None:
                            lost_sub.end(
                                "lease-lost", "The stream's slot lapsed; reconnect with Last-Event-ID."
                            )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("stream housekeeping failed; retrying", exc_info=True)

    async def _heartbeats(self) -> None:
        """Wake the clients whose heartbeat is due (one timer for all, instead of one per client)."""
        while True:
            await asyncio.sleep(min(1.0, settings.STREAM_HEARTBEAT_SECONDS / 4))
            now = time.monotonic()
            for sub in self.subscribers.values():
                if sub.next_beat <= now:
                    sub.ready.set()

    async def _charge_minutes(self, now: float) -> None:
        minute = settings.STREAM_MINUTE_SECONDS
        due = [
            s
            for s in self.subscribers.values()
            if not s.ended and now - s.opened >= (s.minutes_charged + 1) * minute
        ]
        if not due or settings.STREAM_CREDITS_PER_MINUTE <= 0:
            return
        charges = [
            billing_streams.MinuteCharge(s.organization_id, s.key_id, settings.STREAM_CREDITS_PER_MINUTE)
            for s in due
        ]
        results = await in_thread(billing_streams.minutes_charge, charges, now_us=now_us(), endpoint=ENDPOINT)
        for sub, charged in zip(due, results, strict=True):
            if charged:
                sub.minutes_charged += 1
            else:
                sub.end("quota-exceeded", "The organization's monthly credits are used up.")

    async def _check_keys(self) -> None:
        key_ids = {s.key_id for s in self.subscribers.values() if not s.ended}
        if not key_ids:
            return
        invalid = await in_thread(_invalid_keys, key_ids)
        if invalid:
            for sub in list(self.subscribers.values()):
                reason = invalid.get(sub.key_id)
                if reason:
                    sub.end(reason, "The API key of this stream is no longer valid.")

    # one client
    async def stream(self, *, sub: Subscriber, last_event_id: str | None) -> AsyncGenerator[bytes, None]:
        """The SSE body of one stream: the missed events (resume) or the current state, then live
        events and heartbeats, until the client leaves or the stream is ended."""
        try:
            await self.ensure_started()
        except ConnectionError:
            self._releases.append((sub.organization_id, sub.connection_id))
            yield frame("0-0", "end", orjson.dumps({"reason": "unavailable", "detail": "Retry later."}))
            return
        # a comment (nothing is dispatched for it), then the reconnection delay as a field of the
        # first event (a block of "retry:" alone makes some clients dispatch an empty event)
        head = [f": candlestack stream\n\nretry: {settings.STREAM_RETRY_MS}\n".encode()]
        resume_from = parse_id(last_event_id)
        state_at: EventId | None = None
        if resume_from is not None and self.floor <= resume_from <= (self.last[0] + _FUTURE_TOLERANCE_MS, 0):
            backlog = self._replay(sub, resume_from)  # replay and subscribe in one step: no gap, no repeat
            sub.after = max(resume_from, self.last) if resume_from > self.last else _ZERO
            sub.last_sent = max(resume_from, backlog[-1][0]) if backlog else resume_from
            self._register(sub)
            head += [d for _i, d in backlog]
        else:
            state_at = self.last
            sub.after = state_at
            sub.last_sent = state_at
            self._register(sub)
            if last_event_id is not None:
                head.append(
                    frame(
                        _format_id(state_at),
                        "reset",
                        orjson.dumps(
                            {
                                "reason": "beyond-window" if resume_from is not None else "unknown-id",
                                "buffer_seconds": settings.STREAM_BUFFER_SECONDS,
                            }
                        ),
                    )
                )
        try:
            if state_at is not None:
                state = await in_thread(
                    events.current_state, coins=sorted(sub.coins), subscribed=sorted(sub.channels)
                )
                state_id = _format_id(state_at)
                head += [frame(state_id, ev.event, ev.data) for ev in state]
            yield b"".join(head)
            heartbeat = settings.STREAM_HEARTBEAT_SECONDS
            sub.next_beat = time.monotonic() + heartbeat
            while True:
                if sub.ended:
                    if sub.ended == "slow-client":
                        self.dropped_slow += 1
                    yield frame(
                        _format_id(sub.last_sent),
                        "end",
                        orjson.dumps({"reason": sub.ended, "detail": sub.ended_detail}),
                    )
                    return
                if sub.pending:
                    items = list(sub.pending)
                    sub.pending.clear()
                    sub.last_sent = items[-1][0]
                    yield b"".join(d for _i, d in items)
                    continue
                if sub.next_beat <= time.monotonic():
                    position = max(self.last, sub.last_sent, sub.after)
                    sub.last_sent = position
                    yield frame(_format_id(position), "heartbeat", orjson.dumps({"time": _now_iso()}))
                    sub.next_beat = time.monotonic() + heartbeat
                    continue
                # woken by the reader (events), the heartbeat task, or sub.end()
                sub.ready.clear()
                await sub.ready.wait()
        finally:
            self._unregister(sub)


def _release(releases: Iterable[tuple[int, str]]) -> None:
    for organization_id, connection_id in releases:
        with contextlib.suppress(*redis_access.ERRORS):
            billing_streams.slot_release(organization_id=organization_id, connection_id=connection_id)


def _invalid_keys(key_ids: Iterable[str]) -> dict[str, str]:
    """key id -> why its streams must end (revoked, expired, deleted), through the key cache."""
    out: dict[str, str] = {}
    now = time.time()
    for key_id in key_ids:
        try:
            entry = keycache.lookup(key_id)
        except Exception:  # the database too is unreachable: judge again at the next check
            logger.warning("stream key check failed for %s", key_id, exc_info=True)
            continue
        if not entry.found:
            out[key_id] = "api-key-unknown"
        elif entry.revoked:
            out[key_id] = "api-key-revoked"
        elif entry.expires_ts is not None and entry.expires_ts <= now:
            out[key_id] = "api-key-expired"
    return out


def _released_db(fn, *args, **kwargs):
    """Run ``fn`` (in a worker thread), then give this thread's database connections back to the
    pool: worker threads are shared and long-lived, and a connection kept per thread would pin the
    pool (``DB_POOL_MAX_SIZE``)."""
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()


async def in_thread(fn, *args, **kwargs):
    """``fn`` in the default executor, its database connections given back afterwards."""
    return await asyncio.to_thread(_released_db, fn, *args, **kwargs)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def hub() -> Hub:
    """This event loop's hub (one per server process)."""
    loop = asyncio.get_running_loop()
    current = _hubs.get(loop)
    if current is None:
        current = _hubs[loop] = Hub()
    return current


class EventStreamResponse(StreamingHttpResponse):
    """The stream view's response. Django's ASGI handler can serve it like any streaming response
    (chunk by chunk through its response iterator), but the stream server's handler
    (``apiplatform.asgi``) sends its headers, lets the request's thread and database connection go,
    and then writes ``events`` straight to the connection with :func:`serve` (docs/stream.md, "How
    it works")."""

    def __init__(self, events: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(events, **kwargs)
        self.events = events


async def serve(body: AsyncGenerator[bytes, None], receive, send) -> None:
    """Write an open stream's chunks to its ASGI connection, one ``send`` per chunk, until the body
    ends (then the response ends) or the client disconnects (then the body is closed at once, which
    unregisters the client and gives back its slot).

    A client that stops reading while its connection stays open fills the socket buffers and blocks
    ``send``. A write blocked longer than ``STREAM_WRITE_TIMEOUT`` ends the stream: the body is closed
    (slot, queue and subscription given back at once), then a final ``end`` event (``slow-client``,
    without an id, so the client's Last-Event-ID stays that of the last event it got) and the end of
    the response wait, bounded by the same timeout, for the client to read them or leave."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    timeout = settings.STREAM_WRITE_TIMEOUT
    gone = stalled = False
    writing_since: float | None = None

    async def until_disconnect() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        if task is not None:
            task.cancel()

    async def stall_guard() -> None:
        nonlocal stalled
        while True:
            await asyncio.sleep(timeout / 4)
            since = writing_since
            if since is not None and loop.time() - since > timeout:
                stalled = True
                if task is not None:
                    task.cancel()
                return

    watcher = loop.create_task(until_disconnect())
    guard = loop.create_task(stall_guard())
    try:
        async with contextlib.aclosing(body):
            async for chunk in body:
                writing_since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                writing_since = None
        guard.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not (gone or stalled):
            raise
        if task is not None:
            task.uncancel()
    finally:
        watcher.cancel()
        guard.cancel()
    if stalled and not gone:
        logger.info("stream dropped: the client read nothing for %.0f s (slow-client)", timeout)
        end = b"event: end\ndata: " + orjson.dumps({"reason": "slow-client", "detail": SLOW_CLIENT_DETAIL})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await send({"type": "http.response.body", "body": end + b"\n\n", "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def stream_events(
    *,
    principal: KeyPrincipal,
    connection_id: str,
    coins: list[str],
    channels: list[str],
    last_event_id: str | None,
) -> AsyncGenerator[bytes, None]:
    """The body of one stream (the view's :class:`EventStreamResponse` content)."""
    sub = Subscriber(
        connection_id=connection_id,
        organization_id=principal.organization_id,
        key_id=principal.key_id,
        coins=frozenset(coins),
        channels=frozenset(channels),
    )
    # closed explicitly when the client leaves (Django closes this generator), not at garbage collection
    async with contextlib.aclosing(hub().stream(sub=sub, last_event_id=last_event_id)) as chunks:
        async for chunk in chunks:
            yield chunk
