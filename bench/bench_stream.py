"""Benchmark: the SSE stream (``GET /v1/stream``) with 1,000 concurrent clients on ONE uvicorn process.

Issue #18's numbers, on loopback:

1. **Fan-out latency.** 1,000 clients subscribe to two coins' prices. Each round the bench writes new
   prices through the write path (``marketdata.services.snapshots_upsert``, committed) and publishes
   them with ``marketdata.events.market_events_publish`` (what the ingestion cycle calls after its
   commit). Per event and client: write committed -> client received (p50/p95/p99/max), and whether
   every client got every event exactly once. Target: p99 <= 250 ms, nobody missing an event.
2. **Memory per idle connection**: the server's RSS (and thread count) with 1 stream open vs 1,001.
3. **Reconnect storm.** All clients disconnect, remembering their last event id; more rounds are
   published; all 1,000 reconnect at once with ``Last-Event-ID`` and must each receive every missed
   event exactly once, in order, before the next live one.

Baseline of the same run: the same fan-out with 1 client (ratio printed), which is the floor of
write -> XADD -> XREAD -> one socket.

Clients are raw asyncio HTTP/1.1 connections (chunked SSE parsing) in ``--procs`` processes so that
the client side is not the bottleneck. A throw-away test database (TEST_DATABASE_NAME) and the Redis
of REDIS_URL are used.

    DEBUG=1 TEST_DATABASE_NAME=test_stream_bench REDIS_URL=redis://127.0.0.1:6379/12 \\
        .venv/bin/python bench/bench_stream.py [--clients 1000] [--rounds 20] [--missed 10] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

COINS = ("benchcoin-a", "benchcoin-b")


# --- the clients (child processes; no Django) --------------------------------------------------------
class Client:
    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.events: list[tuple[str, str, bytes, float]] = []  # (id, event, data, received)
        self.last_id: str | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    async def run(self, last_id: str | None = None) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
        self.writer = writer
        head = (
            f"GET /v1/stream?ids={','.join(COINS)}&channels=prices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.key}\r\nAccept: text/event-stream\r\n"
        )
        if last_id:
            head += f"Last-Event-ID: {last_id}\r\n"
        writer.write((head + "\r\n").encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r} {await reader.read(2000)!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        self.connected.set()
        buf = b""
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return
            chunk = await reader.readexactly(size)
            await reader.readexactly(2)
            now = time.time()
            buf += chunk
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                fields: dict[bytes, bytes] = {}
                for line in block.split(b"\n"):
                    name, _, value = line.partition(b": ")
                    fields[name] = value
                if b"event" in fields:
                    ev_id = fields.get(b"id", b"").decode()
                    self.events.append((ev_id, fields[b"event"].decode(), fields.get(b"data", b""), now))
                    if fields[b"event"] != b"heartbeat":
                        self.last_id = ev_id

    def start(self, last_id: str | None = None) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(last_id))

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # closed on purpose
                await self.task
        self.connected.clear()


def client_process(port: int, key: str, n: int, conn) -> None:
    """Run ``n`` clients, driven by commands from the parent over ``conn``."""

    async def main() -> None:
        clients = [Client(port, key) for _ in range(n)]
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "connect":
                for c in clients:
                    c.start()
                    await asyncio.sleep(0)
                await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 300)
                await asyncio.sleep(1)
                conn.send("connected")
            elif cmd == "collect":
                conn.send([[(i, e, d, t) for i, e, d, t in c.events if e != "heartbeat"] for c in clients])
                for c in clients:
                    c.events.clear()
            elif cmd == "disconnect":
                marks = [c.last_id for c in clients]
                await asyncio.gather(*(c.stop() for c in clients))
                conn.send(marks)
            elif cmd == "reconnect":
                started = time.time()
                for c in clients:
                    c.start(c.last_id)
                await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 300)
                conn.send(time.time() - started)
            elif cmd == "stop":
                await asyncio.gather(*(c.stop() for c in clients))
                conn.send("stopped")
                return

    try:
        asyncio.run(main())
    except Exception as exc:  # tell the parent instead of leaving it waiting
        conn.send(("error", repr(exc)))


# --- the parent: database, server, publisher -----------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> tuple[int, int]:
    """(RSS in KiB, threads) of a process."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--missed", type=int, default=10, help="rounds published while the clients are away")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from accounts.services.api_keys import api_key_create
    from accounts.services.organizations import organization_create
    from billing import services as billing_services
    from billing.models import Plan
    from marketdata import events, services

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = None
    pipes: list = []
    workers: list = []
    try:
        ids = services.coins_upsert(coins=[services.CoinIn(c, c[:4], c) for c in COINS])
        Plan.objects.update_or_create(
            name="bench-stream",
            defaults={
                "display_name": "Bench", "rate_per_minute": 1_000_000, "burst": 100_000,
                "key_rate_per_minute": 1_000_000, "monthly_credits": 10**9, "endpoints": ["*"],
                "timeframes": ["*"], "concurrent_streams": 100_000,
            },
        )  # fmt: skip
        org = organization_create(name="Stream bench")
        _row, key = api_key_create(organization=org, name="bench", audit=False)
        billing_services.organization_plan_set(organization=org, plan_name="bench-stream")
        price = [1000.0]

        def write_round() -> tuple[float, dict[str, float]]:
            """New prices for both coins through the write path, committed, then published."""
            price[0] += 1
            now = timezone.now()
            services.snapshots_upsert(
                rows=[
                    services.SnapshotIn(cid, price[0], 1e9, 1, 1e8, price[0], price[0], 0.5, now, now)
                    for cid in ids.values()
                ]
            )  # autocommit: committed when it returns
            committed = time.time()
            events.market_events_publish(price_ids=list(COINS), coin_ids=[], since=now, now=now)
            return committed, dict.fromkeys(COINS, price[0])

        write_round()  # a state for new connections
        s = connection.settings_dict
        db_url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        port = free_port()
        env = {
            **os.environ, "DATABASE_URL": db_url, "DB_POOL_MAX_SIZE": "8", "LOG_LEVEL": "WARNING",
            "GATEWAY_REDIS_TIMEOUT": "2",  # as scripts/run.sh and the unit run the stream server
        }  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "apiplatform.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--lifespan", "off", "--backlog", "4096"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.2)

        ctx = mp.get_context("spawn")

        def start_workers(total: int) -> None:
            per = [total // args.procs + (1 if i < total % args.procs else 0) for i in range(args.procs)]
            for n in per:
                if n:
                    parent, child = ctx.Pipe()
                    p = ctx.Process(target=client_process, args=(port, key, n, child), daemon=True)
                    p.start()
                    pipes.append(parent)
                    workers.append(p)

        def broadcast(cmd: str) -> list:
            for p in pipes:
                p.send(cmd)
            replies = []
            for p in pipes:
                if not p.poll(600):
                    raise RuntimeError(f"client process did not answer {cmd!r}")
                reply = p.recv()
                if isinstance(reply, tuple) and reply and reply[0] == "error":
                    raise RuntimeError(f"client process failed: {reply[1]}")
                replies.append(reply)
            return replies

        def collect_until(n_prices: int, timeout: float = 60.0) -> list[list]:
            """Every client's events, collected until each has ``n_prices`` price events (or the
            timeout: a client still short of them then is counted as missing events)."""
            merged: list[list] | None = None
            deadline = time.monotonic() + timeout
            while True:
                time.sleep(1.0)
                got = [c for chunk in broadcast("collect") for c in chunk]
                merged = got if merged is None else [a + b for a, b in zip(merged, got, strict=True)]
                if time.monotonic() > deadline or all(
                    sum(1 for ev in evs if ev[1] == "price") >= n_prices for evs in merged
                ):
                    return merged

        def fan_out(rounds: int) -> tuple[list[float], int, int, list[list]]:
            """Publish ``rounds`` rounds; return latencies, clients missing something, duplicates."""
            sent: dict[tuple[str, float], float] = {}
            for _ in range(rounds):
                committed, prices = write_round()
                for coin, p in prices.items():
                    sent[(coin, p)] = committed
                time.sleep(args.interval)
            per_client = collect_until(len(sent))
            latencies, missing, dupes = [], 0, 0
            for evs in per_client:
                got = [(_coin_price(d), t) for _i, e, d, t in evs if e == "price"]
                keys = [k for k, _t in got if k in sent]
                if set(keys) != set(sent):
                    missing += 1
                dupes += len(keys) - len(set(keys))
                latencies += [t - sent[k] for k, t in got if k in sent]
            return latencies, missing, dupes, per_client

        # baseline: one client
        start_workers(1)
        broadcast("connect")
        broadcast("collect")
        rss1, threads1 = proc_status(server.pid)
        base_lat, base_missing, _d, _ = fan_out(max(5, args.rounds // 2))
        broadcast("stop")
        for p in workers:
            p.join(10)
        pipes.clear()
        workers.clear()
        time.sleep(1.5)  # the server releases the slot and forgets the client
        rss_before, threads_before = proc_status(server.pid)

        # 1,000 clients
        start_workers(args.clients)
        t0 = time.time()
        broadcast("connect")
        connect_s = time.time() - t0
        broadcast("collect")  # their current state
        time.sleep(2)
        rss_idle, threads_idle = proc_status(server.pid)
        lat, missing, dupes, _ = fan_out(args.rounds)

        # reconnect storm
        marks = [m for chunk in broadcast("disconnect") for m in chunk]
        time.sleep(1.5)
        missed_rounds = []
        for _ in range(args.missed):
            missed_rounds.append(write_round()[1])
            time.sleep(0.05)
        t0 = time.time()
        reconnect_s = max(broadcast("reconnect"))
        storm_s = time.time() - t0
        time.sleep(1.0)
        _committed, live_prices = write_round()
        per_client = collect_until(args.missed * len(COINS) + len(COINS))
        expected = [(coin, r[coin]) for r in missed_rounds for coin in COINS]
        live = [(coin, live_prices[coin]) for coin in COINS]
        exact = sum(
            1
            for evs in per_client
            if [_coin_price(d) for _i, e, d, _t in evs if e == "price"] == expected + live
        )
        # the missed events arrive in id order, then the live ones: compare as lists (order included),
        # allowing the two coins of one round to come in either order
        exact_unordered = sum(
            1
            for evs in per_client
            if sorted(_coin_price(d) for _i, e, d, _t in evs if e == "price") == sorted(expected + live)
            and len([1 for _i, e, _d, _t in evs if e == "price"]) == len(expected) + len(live)
        )
        broadcast("stop")
    finally:
        for p in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        connection.creation.destroy_test_db(old_name, verbosity=0)

    ms = lambda v: v * 1000  # noqa: E731
    n = args.clients
    print(f"\nSSE stream, one uvicorn process, {n} clients x {len(COINS)} coins (prices), loopback")
    print(f"  connect {n} streams:        {connect_s:6.2f} s")
    print(
        f"  baseline, 1 client:        p50 {ms(pct(base_lat, 0.5)):6.1f} ms"
        f"  p99 {ms(pct(base_lat, 0.99)):6.1f} ms  (missing: {base_missing})"
    )
    print(
        f"  write -> receipt, {n}:   p50 {ms(pct(lat, 0.5)):6.1f} ms  p95 {ms(pct(lat, 0.95)):6.1f} ms"
        f"  p99 {ms(pct(lat, 0.99)):6.1f} ms  max {ms(max(lat)):6.1f} ms  ({len(lat)} deliveries)"
    )
    ratio = pct(lat, 0.99) / max(pct(base_lat, 0.99), 1e-9)
    verdict = "OK" if pct(lat, 0.99) <= 0.25 else "MISSED"
    print(f"  p99 vs 1-client baseline:  x{ratio:.1f}   target p99 <= 250 ms: {verdict}")
    print(f"  clients missing an event:  {missing}   duplicate deliveries: {dupes}")
    print(
        f"  server RSS: 1 stream {rss1 / 1024:.1f} MiB, idle {rss_before / 1024:.1f} MiB, "
        f"{n} idle streams {rss_idle / 1024:.1f} MiB -> "
        f"{(rss_idle - rss_before) / n:.1f} KiB per idle connection"
    )
    print(f"  server threads: idle {threads_before}, with {n} streams {threads_idle} (was {threads1} with 1)")
    print(
        f"  reconnect storm: {n} clients with Last-Event-ID after {args.missed} missed rounds "
        f"({len(expected)} events each): all reconnected in {reconnect_s:.2f} s "
        f"({storm_s:.2f} s incl. replies)"
    )
    print(
        f"  got every missed event exactly once, then the live one: {exact_unordered}/{n} "
        f"(also in publish order: {exact}/{n}); marks known: {sum(1 for m in marks if m)}/{n}"
    )


def _coin_price(data: bytes) -> tuple[str, float]:
    import json

    d = json.loads(data)
    return d["coin"], d["price"]


if __name__ == "__main__":
    main()
