"""Benchmark: the SSE stream (``GET /v1/stream``) with 1,000 concurrent clients on ONE uvicorn process.

Issue #18's numbers, on loopback (docs/stream.md, "Performance"):

1. **Fan-out latency.** 1,000 clients subscribe to two coins' prices. Each round the bench writes new
   prices through the write path (``marketdata.services.snapshots_upsert``, committed) and publishes
   them with ``marketdata.events.market_events_publish`` (what the ingestion cycle calls after its
   commit). Per event and client: write committed -> client received (p50/p95/p99/max), whether
   every client got every event exactly once, where the time goes (commit -> first client, first ->
   last client) and the CPU the server and the clients spent. Target: p99 <= 250 ms, nobody missing
   an event.
2. **Memory per idle connection**: the server's RSS (and thread count) with no stream vs 1,000.
3. **Reconnect storm.** All clients disconnect, remembering their last event id; more rounds are
   published; all 1,000 reconnect at once with ``Last-Event-ID`` and must each receive every missed
   event exactly once, in order, before the next live one. Refused opens are retried after 1 s (as
   EventSource does) and counted.

Baselines of the same run: the same fan-out with 1 client, and the whole run against the code before
issue #18 (``--apps before,stream``; ``before`` exports ``--before-ref`` with git archive and serves
it; ``django`` serves this code through Django's own ASGI handler).

Clients are bare asyncio protocols (they timestamp each read; HTTP, chunked and SSE parsing happen
at collection time) in ``--procs`` processes, so that the client side adds as little as it can. A
throw-away test database (TEST_DATABASE_NAME) and the Redis of REDIS_URL are used.

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
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

COINS = ("benchcoin-a", "benchcoin-b")


# --- the clients (child processes; no Django) --------------------------------------------------------
class Client(asyncio.Protocol):
    """One SSE client: a bare asyncio protocol that only timestamps what arrives
    (``data_received``); the HTTP head, the chunked encoding and the events are parsed later, at
    collection time, so that the clients' own CPU adds as little as possible to the latency they
    measure."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.events: list[tuple[str, str, bytes, float]] = []  # (id, event, data, received)
        self.last_id: str | None = None
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        self.refused = 0  # opens answered with something else than 200
        self._reset()

    def _reset(self) -> None:
        self.raw: list[tuple[float, bytes]] = []  # what arrived after the head, with its time
        self.head = b""
        self.status = 0
        self.answered = asyncio.Event()
        self.wire = b""  # chunked body not yet decoded
        self.body = b""  # decoded, not yet a whole event

    # the protocol (as little work as possible per read)
    def data_received(self, data: bytes) -> None:
        if self.status:
            self.raw.append((time.time(), data))
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end >= 0:
            self.status = int(self.head.split(b" ", 2)[1])
            rest = self.head[end + 4 :]
            if rest:
                self.raw.append((time.time(), rest))
            self.answered.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.answered.set()

    # parsing, at collection time
    def parse(self) -> None:
        raw, self.raw = self.raw, []
        for received, data in raw:
            self.wire += data
            while True:
                eol = self.wire.find(b"\r\n")
                if eol < 0:
                    break
                size = int(self.wire[:eol], 16)
                if len(self.wire) < eol + 2 + size + 2:
                    break
                self.body += self.wire[eol + 2 : eol + 2 + size]
                self.wire = self.wire[eol + 4 + size :]
            while b"\n\n" in self.body:
                block, self.body = self.body.split(b"\n\n", 1)
                fields: dict[bytes, bytes] = {}
                for line in block.split(b"\n"):
                    name, _, value = line.partition(b": ")
                    fields[name] = value
                if b"event" in fields:
                    ev_id = fields.get(b"id", b"").decode()
                    self.events.append((ev_id, fields[b"event"].decode(), fields.get(b"data", b""), received))
                    if fields[b"event"] != b"heartbeat":
                        self.last_id = ev_id

    async def run(self, last_id: str | None = None) -> None:
        """Open the stream; a refused open (5xx, 429) is retried after a second, as EventSource
        does, and counted."""
        loop = asyncio.get_running_loop()
        while True:
            self._reset()
            transport, _ = await loop.create_connection(lambda: self, "127.0.0.1", self.port)
            self.transport = transport
            head = (
                f"GET /v1/stream?ids={','.join(COINS)}&channels=prices HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.key}\r\nAccept: text/event-stream\r\n"
            )
            if last_id:
                head += f"Last-Event-ID: {last_id}\r\n"
            transport.write((head + "\r\n").encode())
            await self.answered.wait()
            if self.status == 200:
                self.connected.set()
                return
            self.refused += 1
            transport.close()
            await asyncio.sleep(1.0)

    def start(self, last_id: str | None = None) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(last_id))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # closed on purpose
                await self.task
        if self.transport is not None:
            self.transport.close()
        self.parse()
        self.connected.clear()


async def wait_connected(clients: list[Client], timeout: float = 120.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), timeout)


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
                await wait_connected(clients)
                await asyncio.sleep(1)
                conn.send("connected")
            elif cmd == "collect":
                for c in clients:
                    c.parse()
                conn.send([[(i, e, d, t) for i, e, d, t in c.events if e != "heartbeat"] for c in clients])
                for c in clients:
                    c.events.clear()
            elif cmd == "disconnect":
                await asyncio.gather(*(c.stop() for c in clients))
                marks = [c.last_id for c in clients]
                for c in clients:
                    c.events.clear()
                conn.send(marks)
            elif cmd == "reconnect":
                started = time.time()
                for c in clients:
                    c.start(c.last_id)
                await wait_connected(clients)
                conn.send((time.time() - started, sum(c.refused for c in clients)))
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: The servers compared (``--apps``):
#: ``before``: the code of ``--before-ref`` (the commit before issue #18's changes), exported to a
#: temporary directory and served from there: Django's ASGI handler (the request's thread kept for
#: the stream's life, every chunk through Django's response iterator, opens unbounded) and the hub
#: as it was (a wake-up and a write per event and client, a timer per client wait);
#: ``django``: this code under Django's own ASGI handler (the hub of this code);
#: ``stream``: this code, the stream server's handler (apiplatform.asgi).
APPS = {
    "before": ["apiplatform.asgi:application"],
    "django": ["django.core.asgi:get_asgi_application", "--factory"],
    "stream": ["apiplatform.asgi:application"],
}
BEFORE_REF = "fc8254c"  # the stream branch before issue #18


def export(ref: str, into: Path) -> Path:
    """The tree of commit ``ref`` in ``into`` (git archive)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


class Bench:
    """One server (uvicorn, one process) and the measurements of issue #18 against it."""

    def __init__(self, args, key: str, db_url: str, write_round) -> None:
        self.args, self.key, self.db_url, self.write_round = args, key, db_url, write_round
        self.server: subprocess.Popen | None = None
        self.pipes: list = []
        self.workers: list = []
        self.tmp: tempfile.TemporaryDirectory[str] | None = None  # the exported tree of "before"

    # plumbing
    def start_server(self, app: str) -> None:
        import httpx

        cwd = ROOT
        if app == "before":
            self.tmp = tempfile.TemporaryDirectory(prefix="bench-stream-before-")
            cwd = export(self.args.before_ref, Path(self.tmp.name))

        self.port = free_port()
        env = {
            **os.environ, "DATABASE_URL": self.db_url, "DB_POOL_MAX_SIZE": "8", "LOG_LEVEL": "WARNING",
            "GATEWAY_REDIS_TIMEOUT": "2",  # as scripts/run.sh and the unit run the stream server
        }  # fmt: skip
        self.server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *APPS[app], "--host", "127.0.0.1",
             "--port", str(self.port), "--no-access-log", "--lifespan", "off", "--backlog", "4096"],
            cwd=cwd, env={**env, "PYTHONPATH": str(cwd)},
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.workers:
            p.join(5)
            if p.is_alive():
                p.kill()
        self.pipes.clear()
        self.workers.clear()
        if self.server is not None:
            self.server.kill()  # a graceful stop would wait for the open streams
            self.server.wait(10)
            self.server = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def start_workers(self, total: int) -> None:
        ctx = mp.get_context("spawn")
        procs = self.args.procs
        per = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
        for n in per:
            if n:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=client_process, args=(self.port, self.key, n, child), daemon=True)
                p.start()
                self.pipes.append(parent)
                self.workers.append(p)

    def stop_workers(self) -> None:
        self.broadcast("stop")
        for p in self.workers:
            p.join(10)
        self.pipes.clear()
        self.workers.clear()

    def broadcast(self, cmd: str) -> list:
        for p in self.pipes:
            p.send(cmd)
        replies = []
        for p in self.pipes:
            if not p.poll(600):
                raise RuntimeError(f"client process did not answer {cmd!r}")
            reply = p.recv()
            if isinstance(reply, tuple) and reply and reply[0] == "error":
                raise RuntimeError(f"client process failed: {reply[1]}")
            replies.append(reply)
        return replies

    def collect_until(self, n_prices: int, timeout: float = 60.0) -> list[list]:
        """Every client's events, collected until each has ``n_prices`` price events (or the
        timeout: a client still short of them then is counted as missing events)."""
        merged: list[list] | None = None
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(1.0)
            got = [c for chunk in self.broadcast("collect") for c in chunk]
            merged = got if merged is None else [a + b for a, b in zip(merged, got, strict=True)]
            if time.monotonic() > deadline or all(
                sum(1 for ev in evs if ev[1] == "price") >= n_prices for evs in merged
            ):
                return merged

    def fan_out(self, rounds: int) -> dict:
        """Publish ``rounds`` rounds: write -> receipt latencies, clients missing something,
        duplicates, and the CPU time the server and the clients spent meanwhile."""
        assert self.server is not None
        sent: dict[tuple[str, float], float] = {}
        cpu0 = cpu_seconds(self.server.pid), sum(cpu_seconds(p.pid) for p in self.workers)
        t0 = time.monotonic()
        for _ in range(rounds):
            committed, prices = self.write_round()
            for coin, p in prices.items():
                sent[(coin, p)] = committed
            time.sleep(self.args.interval)
        per_client = self.collect_until(len(sent))
        wall = time.monotonic() - t0
        cpu1 = cpu_seconds(self.server.pid), sum(cpu_seconds(p.pid) for p in self.workers)
        latencies: list[float] = []
        receipts: dict[tuple[str, float], list[float]] = {}  # per event: when each client got it
        missing = dupes = 0
        for evs in per_client:
            got = [(_coin_price(d), t) for _i, e, d, t in evs if e == "price"]
            keys = [k for k, _t in got if k in sent]
            if set(keys) != set(sent):
                missing += 1
            dupes += len(keys) - len(set(keys))
            latencies += [t - sent[k] for k, t in got if k in sent]
            for k, t in got:
                receipts.setdefault(k, []).append(t)
        return {
            "spread": [max(ts) - min(ts) for ts in receipts.values()],
            "first": [min(ts) - sent[k] for k, ts in receipts.items() if k in sent],
            "load": os.getloadavg()[0],
            "lat": latencies, "missing": missing, "dupes": dupes, "wall": wall,
            "server_cpu": cpu1[0] - cpu0[0], "client_cpu": cpu1[1] - cpu0[1],
        }  # fmt: skip

    # the measurements
    def run(self, app: str) -> dict:
        args, out = self.args, dict[str, Any](app=app)
        self.start_server(app)
        try:
            assert self.server is not None
            # baseline: one client
            self.start_workers(1)
            self.broadcast("connect")
            self.broadcast("collect")
            out["base"] = self.fan_out(max(5, args.rounds // 2))
            self.stop_workers()
            time.sleep(1.5)  # the server releases the slot and forgets the client
            out["rss_before"], out["threads_before"] = proc_status(self.server.pid)

            # N clients
            self.start_workers(args.clients)
            t0 = time.time()
            self.broadcast("connect")
            out["connect_s"] = time.time() - t0
            self.broadcast("collect")  # their current state
            time.sleep(2)
            out["rss_idle"], out["threads_idle"] = proc_status(self.server.pid)
            out["many"] = self.fan_out(args.rounds)

            # reconnect storm
            marks = [m for chunk in self.broadcast("disconnect") for m in chunk]
            out["marks"] = sum(1 for m in marks if m)
            time.sleep(1.5)
            missed_rounds = []
            for _ in range(args.missed):
                missed_rounds.append(self.write_round()[1])
                time.sleep(0.05)
            replies = self.broadcast("reconnect")
            out["reconnect_s"] = max(r[0] for r in replies)
            out["refused"] = sum(r[1] for r in replies)
            time.sleep(1.0)
            _committed, live_prices = self.write_round()
            per_client = self.collect_until(args.missed * len(COINS) + len(COINS))
            expected = [(coin, r[coin]) for r in missed_rounds for coin in COINS]
            live = [(coin, live_prices[coin]) for coin in COINS]
            prices = [[_coin_price(d) for _i, e, d, _t in evs if e == "price"] for evs in per_client]
            out["expected"] = len(expected)
            # every missed event exactly once, then the live ones (as lists: order included) ...
            out["exact"] = sum(1 for got in prices if got == expected + live)
            # ... or in any order (the two coins of one round may come either way round)
            out["exact_unordered"] = sum(1 for got in prices if sorted(got) == sorted(expected + live))
            self.stop_workers()
        finally:
            self.stop()
        return out


def report(r: dict, n: int, args) -> None:
    ms = lambda v: v * 1000  # noqa: E731
    base, many = r["base"]["lat"], r["many"]["lat"]
    print(f"\n[{r['app']}] {n} clients x {len(COINS)} coins (prices), one uvicorn process, loopback")
    print(f"  connect {n} streams:        {r['connect_s']:6.2f} s")
    print(
        f"  baseline, 1 client:        p50 {ms(pct(base, 0.5)):6.1f} ms  p99 {ms(pct(base, 0.99)):6.1f} ms"
        f"  (missing: {r['base']['missing']})"
    )
    print(
        f"  write -> receipt, {n}:   p50 {ms(pct(many, 0.5)):6.1f} ms  p95 {ms(pct(many, 0.95)):6.1f} ms"
        f"  p99 {ms(pct(many, 0.99)):6.1f} ms  max {ms(max(many, default=0)):6.1f} ms"
        f"  ({len(many)} deliveries)"
    )
    verdict = "OK" if pct(many, 0.99) <= 0.25 else "MISSED"
    ratio = pct(many, 0.99) / max(pct(base, 0.99), 1e-9)
    print(f"  p99 vs 1-client baseline:  x{ratio:.1f}   target p99 <= 250 ms: {verdict}")
    print(f"  clients missing an event:  {r['many']['missing']}   duplicate deliveries: {r['many']['dupes']}")
    f = r["many"]
    print(
        f"  where the time goes: commit -> first client {ms(pct(f['first'], 0.5)):.1f} ms (median; the "
        f"publish alone {ms(pct(r['publish'], 0.5)):.1f} ms), first -> last of {n} clients "
        f"{ms(pct(f['spread'], 0.5)):.1f} ms (median), {ms(max(f['spread'], default=0)):.1f} ms (max)"
    )
    print(
        f"  CPU during the fan-out ({f['wall']:.1f} s wall): server {f['server_cpu']:.2f} s, "
        f"{args.procs} client processes {f['client_cpu']:.2f} s; machine load average {f['load']:.1f}"
        f" on {os.cpu_count()} CPUs"
    )
    print(
        f"  server RSS: idle {r['rss_before'] / 1024:.1f} MiB, "
        f"{n} idle streams {r['rss_idle'] / 1024:.1f} MiB -> "
        f"{(r['rss_idle'] - r['rss_before']) / n:.1f} KiB per idle connection; "
        f"threads {r['threads_before']} -> {r['threads_idle']}"
    )
    print(
        f"  reconnect storm ({args.missed} missed rounds, {r['expected']} events each): all back in "
        f"{r['reconnect_s']:.2f} s, refused opens retried: {r['refused']}"
    )
    print(
        f"  every missed event exactly once, then the live one: {r['exact_unordered']}/{n} "
        f"(also in publish order: {r['exact']}/{n}); marks known: {r['marks']}/{n}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--missed", type=int, default=10, help="rounds published while the clients are away")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--apps", default="before,stream", help="servers to compare: before, django, stream")
    ap.add_argument("--before-ref", default=BEFORE_REF, help="the commit served as 'before'")
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
    results = []
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
        publish_s: list[float] = []  # commit -> events appended to the Redis stream

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
            publish_s.append(time.time() - committed)
            return committed, dict.fromkeys(COINS, price[0])

        write_round()  # a state for new connections
        s = connection.settings_dict
        db_url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
        for app in args.apps.split(","):
            bench = Bench(args, key, db_url, write_round)
            publish_s.clear()
            try:
                results.append({**bench.run(app), "publish": list(publish_s)})
            finally:
                bench.stop()
            time.sleep(2)  # the leases of the last server's streams lapse or are released
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    for r in results:
        report(r, args.clients, args)
    if len(results) == 2:
        a, b = results
        p99a, p99b = pct(a["many"]["lat"], 0.99), pct(b["many"]["lat"], 0.99)
        mem_a = (a["rss_idle"] - a["rss_before"]) / args.clients
        mem_b = (b["rss_idle"] - b["rss_before"]) / args.clients
        print(
            f"\n{b['app']} vs {a['app']} (same run): p99 write -> receipt {p99b * 1000:.1f} vs "
            f"{p99a * 1000:.1f} ms (x{p99b / max(p99a, 1e-9):.2f}); memory per idle connection "
            f"{mem_b:.1f} vs {mem_a:.1f} KiB; storm exact {b['exact_unordered']} vs {a['exact_unordered']}"
        )


def _coin_price(data: bytes) -> tuple[str, float]:
    import json

    d = json.loads(data)
    return d["coin"], d["price"]


if __name__ == "__main__":
    main()
