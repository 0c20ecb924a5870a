"""GET /v1/stream against a real uvicorn server, with real SSE clients (httpx-sse) on loopback.

The events come from the real write path: the simulator's prices go through
``ingestion.pipeline.refresh_markets``, which publishes after its transaction commits."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from httpx_sse import connect_sse

from tests.stream.conftest import stream_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(tmp_path, market):
    with stream_server(tmp_path) as (base, _proc):
        yield base


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def take(events, n: int | None = None, *, until=None, timeout: float = 10.0) -> list:
    """Events from an iterator until ``n`` were read or ``until(event)`` is true."""
    out = []
    deadline = time.monotonic() + timeout
    for ev in events:
        out.append(ev)
        if (n is not None and len(out) >= n) or (until is not None and until(ev)):
            return out
        assert time.monotonic() < deadline, f"timed out after {out!r}"
    return out


def test_subscribe_receives_state_then_price_and_candle_events_of_its_coins_only(server, market, stream_key):
    _org, key = stream_key(5)
    coins = market.ids()[:2]
    other = market.ids()[2]
    url = f"{server}/v1/stream?ids={','.join(coins)}&channels=prices,candles:1m,candles:1h"
    with httpx.Client(timeout=10) as client, connect_sse(client, "GET", url, headers=headers(key)) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = source.iter_sse()
        # the current state first: one price per coin and the newest candle per subscribed timeframe
        state = take(events, 6)
        assert sorted((e.event, json.loads(e.data)["coin"]) for e in state) == sorted(
            [("price", c) for c in coins] + [("candle", c) for c in coins for _ in ("1m", "1h")]
        )
        assert all(e.id for e in state)
        market.refresh()
        live = take(events, until=lambda e: e.event == "price" and json.loads(e.data)["coin"] == coins[1])
        prices = {json.loads(e.data)["coin"]: json.loads(e.data) for e in live if e.event == "price"}
        candles = [json.loads(e.data) for e in live if e.event == "candle"]
        assert other not in prices and all(c["coin"] in coins for c in candles)
        assert {c["timeframe"] for c in candles} <= {"1m", "1h"}
        # the price event carries the fields of GET /v1/prices
        rest = httpx.get(f"{server}/v1/prices?ids={coins[1]}", headers=headers(key)).json()["data"][coins[1]]
        assert prices[coins[1]] == {"coin": coins[1], **rest}
        ids = [e.id for e in live]
        assert len(set(ids)) == len(ids)


def newest_id() -> str:
    """The id of the newest event in the market stream."""
    from apiplatform import redis_access
    from marketdata import events

    entries = redis_access.client("default").xrevrange(events.stream_key(), count=1)
    return entries[0][0].decode() if entries else "0-0"


def as_tuple(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


def until_caught_up(events, target: str) -> list:
    """Read until a heartbeat says this client has everything up to ``target`` (heartbeats carry the
    client's position), and return the events before it (heartbeats left out)."""
    out = take(events, until=lambda e: e.event == "heartbeat" and as_tuple(e.id) >= as_tuple(target))
    return [e for e in out if e.event != "heartbeat"]


def test_resume_with_last_event_id_delivers_exactly_the_missed_events_in_order(server, market, stream_key):
    _org, key = stream_key(5)
    coins = market.ids()[:3]
    url = f"{server}/v1/stream?ids={','.join(coins)}&channels=prices,candles:1m,candles:5m"
    # a reference client connected all along, and one that leaves and comes back
    with (
        httpx.Client(timeout=10) as c1,
        httpx.Client(timeout=10) as c2,
        connect_sse(c1, "GET", url, headers=headers(key)) as ref,
    ):
        ref_events = ref.iter_sse()
        take(ref_events, 9)  # its current state
        with connect_sse(c2, "GET", url, headers=headers(key)) as first:
            events = first.iter_sse()
            take(events, 9)
            market.refresh()
            seen = until_caught_up(events, newest_id())
        assert seen, "no live events"
        last_seen = seen[-1].id
        market.refresh()
        market.refresh(minutes=4)  # closes 5m buckets too
        target = newest_id()
        reference = [e for e in until_caught_up(ref_events, target) if as_tuple(e.id) > as_tuple(last_seen)]
        assert len(reference) > len(coins)
        assert any(json.loads(e.data).get("closed") for e in reference if e.event == "candle")
        with connect_sse(c2, "GET", url, headers=headers(key, **{"Last-Event-ID": last_seen})) as again:
            missed = until_caught_up(again.iter_sse(), target)
    assert [(e.id, e.event, e.data) for e in missed] == [(e.id, e.event, e.data) for e in reference]


def test_beyond_the_buffer_window_a_reset_event_and_the_current_state(tmp_path, market, stream_key):
    _org, key = stream_key(5)
    coin = market.ids()[0]
    url = f"/v1/stream?ids={coin}&channels=prices"
    with (
        stream_server(tmp_path, env={"STREAM_BUFFER_SECONDS": "2"}) as (base, _),
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        with connect_sse(client, "GET", url, headers=headers(key)) as source:
            state = take(source.iter_sse(), 1)
        market.refresh()
        time.sleep(3.5)  # the events of that refresh leave the 2 s window
        with connect_sse(client, "GET", url, headers=headers(key, **{"Last-Event-ID": state[0].id})) as again:
            reset, price = take(again.iter_sse(), 2)
        with connect_sse(client, "GET", url, headers=headers(key, **{"Last-Event-ID": "nonsense"})) as bogus:
            unknown = take(bogus.iter_sse(), 1)[0]
    assert reset.event == "reset" and json.loads(reset.data)["reason"] == "beyond-window"
    assert price.event == "price" and json.loads(price.data)["coin"] == coin
    assert as_tuple(price.id) >= as_tuple(newest_id()) or as_tuple(reset.id) <= as_tuple(price.id)
    assert unknown.event == "reset" and json.loads(unknown.data)["reason"] == "unknown-id"


def problem(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json()


def open_stream(client: httpx.Client, url: str, key: str) -> int:
    """Open a stream, read its first event if it is admitted, close it; return the status. (Dropping
    the iterator of ``iter_sse()`` closes the response: the server sees the client leave.)"""
    with connect_sse(client, "GET", url, headers=headers(key)) as source:
        if source.response.status_code == 200:
            take(source.iter_sse(), 1)
        return source.response.status_code


def test_concurrent_stream_limit_holds_across_two_server_processes(tmp_path, market, stream_key):
    _org, key = stream_key(2)
    path = f"/v1/stream?ids={market.ids()[0]}"
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(stream_server(tmp_path))
        b, proc_b = stack.enter_context(stream_server(tmp_path))
        client = stack.enter_context(httpx.Client(timeout=10))
        s1 = stack.enter_context(connect_sse(client, "GET", a + path, headers=headers(key)))
        s1_events = s1.iter_sse()  # (an iterator dropped by the client closes its stream)
        assert take(s1_events, 1)[0].event == "price"
        doomed = httpx.Client(timeout=10)
        s2 = stack.enter_context(connect_sse(doomed, "GET", b + path, headers=headers(key)))
        s2_events = s2.iter_sse()
        assert take(s2_events, 1)[0].event == "price"
        for base in (a, b):  # both slots taken: a third stream is refused on either server
            with client.stream("GET", base + path, headers=headers(key)) as refused:
                refused.read() if refused.status_code != 200 else None
            assert refused.status_code == 429
            body = problem(refused)
            assert body["type"].endswith("/stream-limit-reached")
            assert (body["limit"], body["open"]) == (2, 2)
            assert refused.headers["Retry-After"]
        # the server holding the second stream dies without releasing its slot: the lease (3 s
        # here) runs out and the slot is free again
        proc_b.kill()
        proc_b.wait(timeout=5)
        killed_at = time.monotonic()
        while open_stream(client, a + path, key) != 200:
            assert time.monotonic() - killed_at < 3 + 3, "the dead server's slot was never freed"
            time.sleep(0.3)
        freed_after = time.monotonic() - killed_at
        assert freed_after > 1.0  # not before the lease could have run out (it was renewed recently)
        # a stream that is closed gives its slot back within the housekeeping second
        closed_at = time.monotonic()
        while open_stream(client, a + path, key) != 200:
            assert time.monotonic() - closed_at < 3
            time.sleep(0.2)


def test_revoked_key_ends_the_stream_within_the_documented_time(tmp_path, market, stream_key):
    from accounts.models import ApiKey
    from accounts.services.api_keys import api_key_revoke

    org, key = stream_key(5)
    coin = market.ids()[0]
    with (
        stream_server(tmp_path) as (base, _),
        httpx.Client(timeout=10) as client,
        connect_sse(client, "GET", f"{base}/v1/stream?ids={coin}", headers=headers(key)) as source,
    ):
        events = source.iter_sse()
        take(events, 1)
        revoked_at = time.monotonic()
        api_key_revoke(api_key=ApiKey.objects.get(organization=org))
        rest = take(events, until=lambda e: e.event == "end")
        ended_after = time.monotonic() - revoked_at
        assert list(events) == []  # the server closed the stream after the end event
    end = rest[-1]
    assert json.loads(end.data)["reason"] == "api-key-revoked"
    # documented bound: STREAM_KEY_CHECK_SECONDS (0.5 here) + KEY_LOCAL_CACHE_TTL (1 s)
    assert ended_after < 0.5 + 1.0 + 1.0, ended_after


BAD_QUERIES = [
    ("ids=bitcoin-that-is-not", "ids"),
    ("ids={coin}&channels=prices,trades", "channels"),
    ("ids={coin}&channels=candles:7m", "channels"),
    ("ids={coin}&channels=", "channels"),
    ("ids=" + ",".join(f"c{i}" for i in range(51)), "ids"),
    ("channels=prices", "ids"),
    ("ids={coin}&since=1", "since"),
]


def test_bad_ids_or_channels_are_a_400_problem_before_the_stream_starts(server, market, stream_key):
    _org, key = stream_key(5)
    coin = market.ids()[0]
    for query, parameter in BAD_QUERIES:
        r = httpx.get(f"{server}/v1/stream?{query.format(coin=coin)}", headers=headers(key), timeout=10)
        assert r.status_code == 400, query
        assert [e["parameter"] for e in problem(r)["errors"]] == [parameter], query
    # the plan's timeframes (403) and the key (401) are checked before the stream starts too
    _org, free_key = stream_key(3, timeframes=["5m", "1h"])
    r = httpx.get(f"{server}/v1/stream?ids={coin}&channels=candles:1m", headers=headers(free_key), timeout=10)
    assert r.status_code == 403 and problem(r)["type"].endswith("/plan-upgrade-required")
    r = httpx.get(f"{server}/v1/stream?ids={coin}", timeout=10)
    assert r.status_code == 401 and problem(r)["type"].endswith("/api-key-missing")


def test_minutes_connected_cost_credits_and_an_exhausted_quota_ends_the_stream(tmp_path, market, stream_key):
    from apiplatform import redis_access
    from billing.limits import month_bounds
    from billing.redis_layout import month_key

    # 5 credits a month, no overage: the open costs 1, each (1 s) "minute" 1 more, then it must end
    org, key = stream_key(5, monthly_credits=5, overage=False)
    coin = market.ids()[0]
    env = {"STREAM_MINUTE_SECONDS": "1"}
    with (
        stream_server(tmp_path, env=env) as (base, _),
        httpx.Client(timeout=15) as client,
        connect_sse(client, "GET", f"{base}/v1/stream?ids={coin}", headers=headers(key)) as source,
    ):
        opened = time.monotonic()
        end = take(source.iter_sse(), until=lambda e: e.event == "end", timeout=15)[-1]
        lasted = time.monotonic() - opened
    assert json.loads(end.data)["reason"] == "quota-exceeded"
    assert 3.5 < lasted < 7, lasted
    month, _ = month_bounds(time.time_ns() // 1000)
    assert int(redis_access.client("gateway").get(month_key(org.id, month))) == 5


def test_the_wsgi_web_server_points_to_the_stream_server(market, stream_key):
    from django.test import Client

    _org, key = stream_key(5)
    r = Client().get(f"/v1/stream?ids={market.ids()[0]}", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert r.status_code == 503
    body = r.json()
    assert body["type"].endswith("/stream-unavailable") and body["stream_url"].endswith("/v1/stream")


def test_a_client_that_does_not_read_is_dropped_with_a_final_event(tmp_path, market, stream_key):
    from marketdata import events

    _org, key = stream_key(5)
    coin = market.ids()[0]
    with (
        stream_server(tmp_path, env={"STREAM_CLIENT_QUEUE": "50"}) as (base, _),
        httpx.Client(timeout=20) as client,
        connect_sse(client, "GET", f"{base}/v1/stream?ids={coin}", headers=headers(key)) as source,
    ):
        stream = source.iter_sse()
        take(stream, 1)
        # far more than the socket buffers hold, published while the client reads nothing
        big = json.dumps({"coin": coin, "pad": "x" * 20_000}).encode()
        for _ in range(20):
            events.events_append([events.MarketEvent("price", coin, "prices", big)] * 100)
        rest = list(stream)  # the server ends the stream: iteration stops
    assert rest[-1].event == "end" and json.loads(rest[-1].data)["reason"] == "slow-client"
    assert len(rest) < 2000


def test_a_client_that_stops_reading_loses_its_slot_after_the_write_timeout(tmp_path, market, stream_key):
    """The client keeps its connection open and reads nothing while events pile up: the blocked
    write ends the stream after STREAM_WRITE_TIMEOUT (3 s here), its slot comes back (a plan of one
    stream admits a new one), and when the client finally reads, the stream ends with `end`."""
    from marketdata import events

    _org, key = stream_key(1)
    coin = market.ids()[0]
    path = f"/v1/stream?ids={coin}"
    with (
        stream_server(tmp_path, env={"STREAM_WRITE_TIMEOUT": "3"}) as (base, _),
        httpx.Client(timeout=10) as client,
        socket.socket() as stuck,
    ):
        # a fixed 128 KiB receive buffer (no autotuning up to tcp_rmem's 32 MiB): with the server's send
        # buffer (at most 4 MiB) a few MiB unread fill the way
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 131072)
        url = urlsplit(base)
        stuck.connect((url.hostname, url.port))
        stuck.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        )
        stuck.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:  # the answer's head, then the client stops reading
            head += stuck.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert open_stream(client, base + path, key) == 429  # the stuck client holds the only slot
        big = json.dumps({"coin": coin, "pad": "x" * 20_000}).encode()
        for _ in range(6):  # ~12 MB: far more than the socket buffers hold
            events.events_append([events.MarketEvent("price", coin, "prices", big)] * 100)
        blocked_at = time.monotonic()
        while (status := open_stream(client, base + path, key)) != 200:
            assert status == 429, status
            assert time.monotonic() - blocked_at < 3 + 5, "the stuck client kept its slot"
            time.sleep(0.3)
        received = b""
        while chunk := stuck.recv(65536):  # reading again: what was buffered, the end, then EOF
            received += chunk
            if b"0\r\n\r\n" in received[-16:]:
                break
    tail = received[-400:].decode(errors="replace")
    assert "event: end" in tail and '"slow-client"' in tail, tail
