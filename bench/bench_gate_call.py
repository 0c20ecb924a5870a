"""The gate call's client CPU against another revision of the code, in one run.

    .venv/bin/python bench/bench_gate_call.py [--baseline REV] [--calls 20000] [--rounds 5]

Measures one warm gate call (the request path's one Redis round trip: plan gating, credits,
organization and key buckets, metering) in this tree and in ``REV`` (default ``HEAD~1``; checked
out into a temporary git worktree), each in its own fresh interpreter, alternating round by round
so that machine noise hits both alike. Prints, per tree, the median of the rounds of client CPU
(``time.process_time``) and wall time per call, and the Redis commands the server saw per call
(``INFO commandstats``), then the ratio this tree / baseline.

Works with both layouts of the gate: ``billing.gate.check`` (since the placement refactor) and
``apiplatform.ratelimit.gate`` (before it). Uses a throw-away database (created through Django's
test-database machinery) and a private ``redis-server`` on a free loopback port, so that the
server's command counts are this benchmark's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs inside a fresh interpreter, with the tree to measure as its working directory.
PROBE = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apiplatform.settings")
import django
django.setup()
from django.test.utils import setup_test_environment, get_runner
from django.conf import settings
calls = int(sys.argv[1])
runner = get_runner(settings)(verbosity=0, interactive=False)
old = runner.setup_databases()
try:
    from billing.models import Plan
    try:
        from billing import gate as g
        check, publish = g.check, __import__("billing.plan_cache", fromlist=["x"]).publish_plan
        from billing.selectors import organization_plan_limits
        client = __import__("apiplatform.redis_access", fromlist=["x"]).client("gateway")
    except ImportError:
        from apiplatform import ratelimit as g
        check, publish = g.gate, g.publish_plan
        from billing.selectors import organization_plan_limits
        client = g.client.get()
    plan = Plan.objects.get(name=settings.BILLING_DEFAULT_PLAN)
    Plan.objects.filter(pk=plan.pk).update(rate_per_minute=10**6, burst=10**6, key_rate_per_minute=10**6,
                                            monthly_credits=10**12)
    publish(424242, organization_plan_limits(organization_id=424242))
    kwargs = dict(
        organization_id=424242, key_id="benchkey0001", endpoint="ping", cost=1, meter_endpoint="ping"
    )
    for _ in range(2000):  # warm: connection, script cache, plan parse cache
        check(**kwargs)
    before = {k: v["calls"] for k, v in client.info("commandstats").items()}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        check(**kwargs)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    after = {k: v["calls"] for k, v in client.info("commandstats").items()}
    # round trips: the commands the client sent (EVALSHA, and anything else outside a script);
    # commands run inside the script are counted by Redis too, so they are reported apart
    inside = ("hmget", "mget", "set", "incrby", "expire", "hincrby", "time")
    sent = sum(after[k] - before.get(k, 0) for k in after if k.split("_", 1)[1] not in inside) - 1  # - INFO
    scripted = sum(after[k] - before.get(k, 0) for k in after if k.split("_", 1)[1] in inside)
    print(json.dumps({"cpu_us": cpu / calls * 1e6, "wall_us": wall / calls * 1e6,
                      "round_trips": sent / calls, "in_script": scripted / calls}))
finally:
    runner.teardown_databases(old)
"""


def run_probe(tree: Path, calls: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(calls)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(f"probe failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    base_dir = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(base_dir), args.baseline], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    env = {
        **os.environ,
        "DEBUG": "1",
        "CACHE_KEY_PREFIX": "benchgate",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "TEST_DATABASE_NAME": os.environ.get("BENCH_DATABASE_NAME", "candlestack_bench_gate"),
        "LOG_LEVEL": "WARNING",
    }
    results: dict[str, list[dict]] = {"this tree": [], args.baseline: []}
    try:
        for round_ in range(args.rounds):
            for name, tree in (("this tree", REPO), (args.baseline, base_dir)):
                results[name].append(run_probe(tree, args.calls, env))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=REPO, capture_output=True)
        shutil.rmtree(base_dir, ignore_errors=True)
        redis_server.terminate()

    print(f"gate call, {args.calls} calls x {args.rounds} rounds (median of rounds); cores={os.cpu_count()}")
    medians = {}
    for name, rows in results.items():
        medians[name] = {
            k: statistics.median(r[k] for r in rows)
            for k in ("cpu_us", "wall_us", "round_trips", "in_script")
        }
        m = medians[name]
        print(
            f"  {name:<12} client CPU {m['cpu_us']:7.1f} µs  wall {m['wall_us']:7.1f} µs  "
            f"Redis round trips/call {m['round_trips']:.3f} (commands inside the script {m['in_script']:.1f})"
        )
    here, base = medians["this tree"], medians[args.baseline]
    cpu_ratio, wall_ratio = here["cpu_us"] / base["cpu_us"], here["wall_us"] / base["wall_us"]
    print(f"  ratio this/baseline: CPU {cpu_ratio:.3f}  wall {wall_ratio:.3f}")


if __name__ == "__main__":
    main()
