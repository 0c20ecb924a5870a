"""Ground truth: the pipeline against the in-process simulator with faults, minute by minute.

Simulated 1m polling with 20% of upstream calls failing (429/5xx; the client retries 3 times, so
some pages still fail for good), a whole cycle failing (a gap), price spikes, and an upstream whose
coins refresh only every 20-60 s. Two scenarios: 300 coins
(two pages of /coins/markets) for 90 minutes, and 25 coins for a whole day (every 1d bucket closes).
``GT_COINS``/``GT_MINUTES`` run one bigger scenario instead (e.g. 300 coins x 1440 minutes, ~4 min).
Afterwards
every candle of every timeframe must equal the truth computed here, independently, from the
simulator's deterministic tick function and the poll times: no gap that was polled, no duplicate,
no wrong value, closed flags right.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from django.db import connection

from ingestion import pipeline
from ingestion.coingecko import CoinGeckoClient, RetryPolicy
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata.models import TIMEFRAME_DELTA
from tests.conftest import simulator_client

if os.environ.get("GT_COINS") or os.environ.get("GT_MINUTES"):
    SCENARIOS = [(int(os.environ.get("GT_COINS", "300")), int(os.environ.get("GT_MINUTES", "1440")))]
else:
    SCENARIOS = [(300, 90), (25, 24 * 60)]
PER_PAGE = 250
POLL_OFFSET = timedelta(seconds=7)  # cycles start a few seconds into each minute
GAP_CYCLE = 67  # this cycle fails completely


def _client(sim, clock) -> CoinGeckoClient:
    return simulator_client(
        sim,
        clock=clock,
        retry=RetryPolicy(
            max_attempts=3, base_delay=0.001, max_delay=0.005, max_total=30, retry_after_cap=0.005
        ),
    )


def truth(sim, polls, spiked, final_now):
    """Expected candles {(upstream_id, timeframe, bucket_start): values} from the tick function."""
    last: dict[str, tuple[float, datetime]] = {}
    ticks: dict[str, dict[datetime, tuple[float, float, float]]] = {}
    polled: dict[str, set[datetime]] = {}
    for t, received in polls:
        minute = t.replace(second=0, microsecond=0)
        for cid in received:
            polled.setdefault(cid, set()).add(minute)
            tick = sim.tick_at_or_before(cid, t)
            if tick is None:
                continue
            price = tick.price
            if (cid, tick.time_ms) in spiked:
                price = None  # a spiked price: rejected below unless it is the coin's first value
            ref = last.get(cid)
            if ref is not None and tick.time <= ref[1]:
                continue  # nothing new
            if ref is not None and price is None:
                continue  # implausible jump rejected
            assert price is not None, "a spike on a coin's first poll is not modelled here"
            last[cid] = (price, tick.time)
            ticks.setdefault(cid, {})[tick.time] = (price, tick.market_cap, tick.total_volume)

    expected = {}
    for cid in polled.keys() | ticks.keys():
        by_minute: dict[datetime, list] = {}
        for time_, values in ticks.get(cid, {}).items():
            by_minute.setdefault(time_.replace(second=0, microsecond=0), []).append((time_, *values))
        minutes = sorted(by_minute.keys() | polled.get(cid, set()))
        rows = []
        carry = None
        m = minutes[0]
        while m <= minutes[-1]:
            if m in by_minute:
                ts = sorted(by_minute[m])
                prices = [x[1] for x in ts]
                carry = (ts[-1][1], ts[-1][3], ts[-1][2])  # close, volume_24h, market_cap
                rows.append(
                    (m, prices[0], max(prices), min(prices), prices[-1], None, carry[1], carry[2], False,
                     len(ts), not rows)  # samples: the ticks; partial: the coin's first observed minute
                )  # fmt: skip
            elif m in polled.get(cid, ()) and carry is not None:
                rows.append(
                    (m, carry[0], carry[0], carry[0], carry[0], None, carry[1], carry[2], True, 0, False)
                )
            m += timedelta(minutes=1)
        if not rows:
            continue
        df = pd.DataFrame(
            rows,
            columns=[
                "b",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "volume_24h",
                "market_cap",
                "filled",
                "samples",
                "partial",
            ],
        )
        # the bucket grid starts on Monday 1970-01-05 (weeks start on Mondays), 4 days after the epoch
        # pandas floors from: shift by 4 days, floor, shift back (the same grid for minutes … days)
        off = pd.Timedelta(days=4)
        for tf, step in TIMEFRAME_DELTA.items():
            g = df.groupby((df["b"] - off).dt.floor(pd.Timedelta(step)) + off, sort=True)
            agg = g.agg(
                open=("open", "first"),
                high=("high", "max"),
                low=("low", "min"),
                close=("close", "last"),
                volume_24h=("volume_24h", "last"),
                market_cap=("market_cap", "last"),
                filled=("filled", "all"),
                samples=("samples", "sum"),
                partial=("partial", "any"),
            )
            for b, r in agg.iterrows():
                start = b.to_pydatetime()
                expected[(cid, tf, start)] = (
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    None,
                    r["volume_24h"],
                    r["market_cap"],
                    start + step <= final_now,
                    bool(r["filled"]),
                    int(r["samples"]),
                    bool(r["partial"]),
                )
    return expected


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("coins", "minutes"), SCENARIOS)
@pytest.mark.django_db(transaction=True)  # cycles commit, as in production (dead versions get pruned)
def test_every_candle_of_every_timeframe_equals_the_truth(coins, minutes):
    # starts 20 minutes before a midnight: day buckets open, close and open again
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2, minutes=20)
    clock = ManualClock(day)
    sim = Simulator(SimulatorConfig(coins=coins, seed=2026), clock=clock)
    client = _client(sim, clock)
    polls: list[tuple[datetime, set[str]]] = []
    failed_total = 0
    try:
        for cycle in range(minutes):
            t = day + timedelta(minutes=cycle) + POLL_OFFSET
            clock.set(t)
            if cycle == 1:
                sim.set_faults(error_rate=0.2, spike_rate=0.0005, seed=5)
            if cycle == GAP_CYCLE:
                sim.force(503, count=9)  # 3 pages x 3 attempts: the whole cycle fails
            summary = pipeline.refresh_markets(client, now=t, per_page=PER_PAGE)
            failed = set(summary.details["failed_pages"])
            failed_total += len(failed)
            order = [r["id"] for r in sim.markets_at(t)]
            received = set()
            for page in range(1, summary.details["pages"] + 1):
                if page not in failed:
                    received.update(order[(page - 1) * PER_PAGE : page * PER_PAGE])
            polls.append((t, received))
    finally:
        client.close()
    assert sim.stats["fault_spike"] > 0 and sim.stats.total() > 0
    assert polls[GAP_CYCLE][1] == set()
    spiked = {(f["coin"], f["t_ms"]) for f in sim.fault_log if f["kind"] == "spike"}
    final_now = polls[-1][0]
    expected = truth(sim, polls, spiked, final_now)

    with connection.cursor() as cur:
        cur.execute(
            "SELECT k.upstream_id, c.timeframe, c.bucket_start, c.open, c.high, c.low, c.close, c.volume, "
            "c.volume_24h, c.market_cap, c.closed, c.filled, c.samples, c.partial "
            "FROM marketdata_candle c JOIN marketdata_coin k ON k.id = c.coin_id"
        )
        got = {(r[0], r[1], r[2]): tuple(r[3:]) for r in cur.fetchall()}
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing, f"{len(missing)} candles missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} unexpected candles, e.g. {sorted(extra)[:3]}"
    wrong = [k for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} wrong candles, e.g. {[(k, got[k], expected[k]) for k in wrong[:2]]}"
    # the scenario really contained what it claims
    assert any(v[8] for k, v in got.items() if k[1] == "1m")  # some minutes carried forward (filled)
    assert any(v[7] for k, v in got.items() if k[1] == "1d") and any(not v[7] for k, v in got.items())
    print(
        f"\nground truth: {coins} coins x {minutes} minutes, {len(got)} candles equal the truth; "
        f"{failed_total} pages failed after retries, {len(spiked)} spiked ticks, "
        f"{sim.stats.get('fault_500', 0) + sim.stats.get('fault_429', 0)} injected errors (sample)"
    )
