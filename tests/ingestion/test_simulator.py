"""The simulator: deterministic ground truth, documented granularity/close-time/limit rules, errors,
rate limit, faults, and the stand-alone server."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import numpy as np
import pytest

from ingestion.simulator import ManualClock, Simulator, SimulatorConfig, SimulatorServer
from ingestion.simulator.protocol import RATE_LIMIT_BODY

from ..conftest import REPO_ROOT
from .conftest import SIM_START

MIN5, HOUR, DAY = 300_000, 3_600_000, 86_400_000


def get(sim: Simulator, path: str, key: str | None = "k1", header: str = "x-cg-pro-api-key", **params):
    headers = {header: key} if key else {}
    with httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://sim/api/v3") as client:
        return client.get(path, params=params, headers=headers)


def test_same_seed_same_values_and_other_seed_other_values(clock):
    a = Simulator(SimulatorConfig(coins=300, seed=3), clock=clock)
    b = Simulator(SimulatorConfig(coins=300, seed=3), clock=clock)
    c = Simulator(SimulatorConfig(coins=300, seed=4), clock=clock)
    assert a.markets_at() == b.markets_at()
    prices_a = [a.tick_at_or_before(cid, a.now()).price for cid in ("bitcoin", "ethereum", "tether")]
    prices_c = [c.tick_at_or_before(cid, c.now()).price for cid in ("bitcoin", "ethereum", "tether")]
    assert prices_a != prices_c


def test_markets_show_the_tick_in_force_at_poll_time(sim, clock):
    for _ in range(3):
        answer = get(sim, "/coins/markets", vs_currency="usd", per_page=250).json()
        for item in answer[:50]:
            tick = sim.tick_at_or_before(item["id"], sim.now())
            assert item["current_price"] == tick.price
            assert item["market_cap"] == tick.market_cap
            assert item["total_volume"] == tick.total_volume
            assert item["last_updated"] == tick.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            assert tick.time <= sim.now()
        clock.advance(37)


def test_ticks_are_periodic_and_consistent_with_tick_at_or_before(sim):
    end = sim.now()
    ticks = sim.ticks_between("ethereum", end - timedelta(minutes=30), end)
    gaps = {b.time_ms - a.time_ms for a, b in itertools.pairwise(ticks)}
    assert len(gaps) == 1 and 20_000 <= gaps.pop() <= 60_000
    assert sim.tick_at_or_before("ethereum", end) == ticks[-1]
    mid = ticks[5]
    assert sim.tick_at_or_before("ethereum", mid.time + timedelta(milliseconds=1)) == mid
    assert sim.tick_at_or_before("ethereum", mid.time - timedelta(milliseconds=1)) == ticks[4]


def test_market_chart_granularity_and_last_point_now(sim):
    now_ms = sim.now_ms()
    cases = {"1": MIN5, "2": HOUR, "90": HOUR, "91": DAY, "max": DAY}
    for days, step in cases.items():
        body = get(sim, "/coins/bitcoin/market_chart", vs_currency="usd", days=days).json()
        times = [p[0] for p in body["prices"]]
        assert times[-1] == now_ms, "the last point is now"
        assert {b - a for a, b in itertools.pairwise(times[:-1])} == {step}
        assert all(t % step == 0 for t in times[:-1]), "points sit on the bucket grid (00:00 UTC for daily)"
        for t, price in body["prices"][-5:]:
            assert price == sim.tick_at_or_before("bitcoin", t / 1000).price
        for t, volume in body["total_volumes"][-3:]:
            assert volume == sim.tick_at_or_before("bitcoin", t / 1000).total_volume  # rolling 24h value
    assert (
        get(sim, "/coins/bitcoin/market_chart", vs_currency="usd", days="1", interval="5m").status_code == 401
    )


def test_market_chart_range_granularity(sim):
    now = sim.now_ms() // 1000

    def step_of(start: int, end: int) -> int:
        body = get(
            sim, "/coins/bitcoin/market_chart/range", vs_currency="usd", **{"from": start, "to": end}
        ).json()
        times = [p[0] for p in body["prices"]]
        return times[1] - times[0]

    assert step_of(now - 86_400, now) == MIN5  # 1 day ending now
    assert step_of(now - 8 * 86_400, now - 7 * 86_400) == HOUR  # 1 day, not recent
    assert step_of(now - 90 * 86_400, now) == HOUR
    assert step_of(now - 91 * 86_400, now) == DAY


def test_ohlc_timestamps_are_close_times_and_values_come_from_ticks(sim, clock):
    clock.advance(600)
    rows = get(sim, "/coins/bitcoin/ohlc", vs_currency="usd", days="1").json()
    size = 30 * 60 * 1000
    assert {b[0] - a[0] for a, b in itertools.pairwise(rows)} == {size}
    assert rows[-1][0] > sim.now_ms(), "the last candle is still open: its close time is in the future"
    for close_ms, o, h, lo, c in rows[-6:-1]:
        start_ms = close_ms - size
        ticks = sim.ticks_between("bitcoin", start_ms / 1000, (close_ms - 1) / 1000)
        open_tick = sim.tick_at_or_before("bitcoin", start_ms / 1000)
        prices = [open_tick.price] + [t.price for t in ticks]
        assert (o, h, lo, c) == (prices[0], max(prices), min(prices), prices[-1])


@pytest.mark.parametrize(
    ("days", "hours"), [("1", 0.5), ("7", 4), ("14", 4), ("30", 4), ("90", 96), ("max", 96)]
)
def test_ohlc_candle_size_follows_days(sim, days, hours):
    rows = get(sim, "/coins/bitcoin/ohlc", vs_currency="usd", days=days).json()
    assert rows[1][0] - rows[0][0] == int(hours * HOUR)
    assert all(r[0] % int(hours * HOUR) == 0 for r in rows)


@pytest.mark.parametrize("days", ["2", "3", "60", "0", "abc", ""])
def test_ohlc_days_outside_the_enum_is_400(sim, days):
    answer = get(sim, "/coins/bitcoin/ohlc", vs_currency="usd", days=days)
    assert answer.status_code == 400 and "error" in answer.json()


def test_ohlc_range_limits_and_intervals(sim):
    now = sim.now_ms() // 1000
    hourly = get(
        sim,
        "/coins/bitcoin/ohlc/range",
        vs_currency="usd",
        interval="hourly",
        **{"from": now - 31 * 86400, "to": now},
    )
    assert hourly.status_code == 200 and 743 <= len(hourly.json()) <= 745
    too_long = get(
        sim,
        "/coins/bitcoin/ohlc/range",
        vs_currency="usd",
        interval="hourly",
        **{"from": now - 32 * 86400, "to": now},
    )
    assert too_long.status_code == 400
    daily = get(
        sim,
        "/coins/bitcoin/ohlc/range",
        vs_currency="usd",
        interval="daily",
        **{"from": now - 180 * 86400, "to": now},
    )
    assert daily.status_code == 200 and {r[0] % DAY for r in daily.json()} == {0}
    assert (
        get(
            sim,
            "/coins/bitcoin/ohlc/range",
            vs_currency="usd",
            interval="daily",
            **{"from": now - 181 * 86400, "to": now},
        ).status_code
        == 400
    )
    assert (
        get(
            sim, "/coins/bitcoin/ohlc/range", vs_currency="usd", **{"from": now - 86400, "to": now}
        ).status_code
        == 400
    )


def test_key_errors_have_the_real_shapes(clock):
    pro = Simulator(SimulatorConfig(coins=50, api_keys=("good",)), clock=clock)
    missing = get(pro, "/ping", key=None)
    assert missing.status_code == 401 and missing.json()["status"]["error_code"] == 10002
    demo_key = get(pro, "/ping", key="good", header="x-cg-demo-api-key")
    assert demo_key.json()["status"]["error_code"] == 10011
    assert get(pro, "/ping", key="wrong").status_code == 401
    assert get(pro, "/ping", key="good").status_code == 200
    assert get(pro, "/ping", key=None, x_cg_pro_api_key="good").status_code == 200  # query alternative
    demo = Simulator(SimulatorConfig(coins=50, plan="demo"), clock=clock)
    assert get(demo, "/ping", key="any").json()["status"]["error_code"] == 10010
    history = get(
        demo,
        "/coins/bitcoin/market_chart",
        key="d",
        header="x-cg-demo-api-key",
        vs_currency="usd",
        days="400",
    )
    assert history.status_code == 401 and history.json()["error"]["status"]["error_code"] == 10012
    pro.revoke_key("good", status=403)
    assert get(pro, "/ping", key="good").status_code == 403


def test_rate_limit_answers_429_with_real_body_and_retry_after(clock):
    wall = ManualClock(1200.0)
    sim = Simulator(
        SimulatorConfig(coins=20, rate_limit_per_min=3, rate_limit_window=60), clock=clock, rate_clock=wall
    )
    wall.advance(15)
    statuses = [get(sim, "/ping").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = get(sim, "/ping")
    assert limited.json() == RATE_LIMIT_BODY
    assert limited.headers["retry-after"] == "45"
    assert get(sim, "/ping", key="other-key").status_code == 200  # limits are per key
    wall.advance(45)
    assert get(sim, "/ping").status_code == 200


def test_long_urls_get_414(clock):
    sim = Simulator(SimulatorConfig(coins=50, max_url_length=200), clock=clock)
    ids = ",".join(sim.coin_ids)
    assert get(sim, "/simple/price", ids=ids, vs_currencies="usd").status_code == 414


def test_faults_are_deterministic_per_fault_seed(clock):
    def run(seed: int) -> tuple:
        sim = Simulator(SimulatorConfig(coins=300, seed=1), clock=ManualClock(SIM_START))
        sim.set_faults(seed=seed, error_rate=0.3, malformed_rate=0.1, stale_rate=0.05, spike_rate=0.02)
        answers = [get(sim, "/coins/markets", vs_currency="usd", per_page=50, page=p) for p in range(1, 7)]
        return tuple((a.status_code, a.text) for a in answers), tuple(f["kind"] for f in sim.fault_log)

    first, again, other = run(11), run(11), run(12)
    assert first == again
    assert first != other
    kinds = {k.split("_")[0] for k in first[1]}
    assert {"malformed", "stale"} <= kinds


def test_gaps_and_spikes_in_charts(sim):
    clean = get(sim, "/coins/bitcoin/market_chart", vs_currency="usd", days="1").json()["prices"]
    sim.set_faults(gap_rate=0.2, spike_rate=0.05, spike_factor=25)
    faulty = get(sim, "/coins/bitcoin/market_chart", vs_currency="usd", days="1").json()["prices"]
    assert len(faulty) < len(clean)
    truth = dict(map(tuple, clean))
    ratios = {round(p / truth[t]) for t, p in faulty}
    assert ratios == {1, 25}


def test_module_needs_no_django_and_serves_http(tmp_path):
    code = "import sys, ingestion.simulator.__main__, ingestion.simulator; assert 'django' not in sys.modules"
    check = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "ingestion.simulator", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for flag in (
        "--coins",
        "--seed",
        "--error-rate",
        "--rate-limit",
        "--malformed-rate",
        "--speed",
        "/_sim/clock",
    ):
        assert flag in help_text
    with socket_port() as port:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingestion.simulator", "--port", str(port), "--coins", "100",
             "--seed", "5", "--start", SIM_START, "--keys", "abc"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"{base}/api/v3/ping", headers={"x-cg-pro-api-key": "abc"}, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not start"
                time.sleep(0.1)
        assert answer.json() == {"gecko_says": "(V3) To the Moon!"}
        assert httpx.get(f"{base}/api/v3/ping", timeout=2).status_code == 401
        moved = httpx.post(
            f"{base}/_sim/clock", json={"now": "2026-06-01T00:00:00Z", "speed": 0}, timeout=2
        ).json()
        assert moved["now_iso"] == "2026-06-01T00:00:00.000Z"
        tick = httpx.get(f"{base}/_sim/truth/tick", params={"coin": "bitcoin"}, timeout=2).json()
        chart = httpx.get(
            f"{base}/api/v3/simple/price", params={"ids": "bitcoin", "vs_currencies": "usd"},
            headers={"x-cg-pro-api-key": "abc"}, timeout=2,
        ).json()  # fmt: skip
        assert chart["bitcoin"]["usd"] == tick["price"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class socket_port:
    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


def test_background_server_and_wsgi_agree(sim):
    with SimulatorServer(sim) as server:
        over_http = httpx.get(
            f"{server.url}/coins/markets", params={"vs_currency": "usd"}, headers={"x-cg-pro-api-key": "k"}
        ).json()
    in_process = get(sim, "/coins/markets", vs_currency="usd").json()
    assert over_http == in_process


def test_refreshing_the_whole_universe_is_vectorised():
    sim = Simulator(SimulatorConfig(coins=2000, seed=2), clock=ManualClock(SIM_START))
    state = sim.market_state()
    assert state.price.shape == (2000,) and np.all(state.price[state.listed] > 0)
    ranks = state.rank[state.rank > 0]
    assert sorted(ranks.tolist()) == list(range(1, ranks.size + 1))
    caps = state.market_cap[np.argsort(state.rank)][-ranks.size :]
    assert np.all(np.diff(caps) <= 0), "rank 1 has the largest market cap"


def test_truth_tick_takes_epoch_or_iso_time_and_refuses_other_text(sim):
    with httpx.Client(transport=httpx.WSGITransport(app=sim), base_url="http://sim") as control:
        epoch = control.get("/_sim/truth/tick", params={"coin": "bitcoin", "t": "1780272000"})
        iso = control.get("/_sim/truth/tick", params={"coin": "bitcoin", "t": "2026-06-01T00:00:00Z"})
        bad = control.get("/_sim/truth/tick", params={"coin": "bitcoin", "t": "yesterday"})
    assert epoch.status_code == iso.status_code == 200, epoch.text
    assert epoch.json() == iso.json()
    assert bad.status_code == 400 and "ISO 8601" in bad.text


@pytest.mark.parametrize(
    "index",
    [
        np.arange(100_000, 120_000),  # a coin's every tick over days (hourly candles)
        np.arange(5_000_000, 5_800_000, 7),  # sampled ticks (daily candles)
        np.random.default_rng(3).integers(0, 1 << 30, 6_000),  # anywhere, unordered, repeats possible
        np.array([0, 1, 2, (1 << 30) - 1, 1 << 30] * 1_000),  # the ends of the simulated range
    ],
)
def test_brownian_of_one_coins_many_ticks_is_the_same_to_the_bit(monkeypatch, index):
    from ingestion.simulator import walk

    keys = np.full(index.shape, walk.seed_keys(42, 9, 1)[7], dtype=np.uint64)
    assert index.size >= walk.SHARED_TREE_MIN
    shared = walk.brownian(keys, index)  # the upper tree nodes computed once
    monkeypatch.setattr(walk, "SHARED_TREE_MIN", 1 << 62)
    per_index = walk.brownian(keys, index)
    assert np.array_equal(shared, per_index)
