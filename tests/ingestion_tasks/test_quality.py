"""Quality checks on real candles: injected gaps and spikes are found with their exact ranges and a
re-fetch of exactly that range is scheduled; stale coins are flagged; fixed ranges resolve."""

from __future__ import annotations

import contextlib
import math
import random
import sys
import types
from datetime import UTC, datetime, timedelta
from unittest import mock

import numpy as np
import pytest

import ingestion
from apiplatform.jobs.models import JobRun
from ingestion import quality, tasks
from ingestion.models import QualityFlag
from marketdata.services import CandleRow, CoinIn, SnapshotIn, candles_upsert, coins_upsert, snapshots_upsert

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
N = 180


def _walk(seed: int, n: int = N) -> list[float]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for _ in range(n):
        price *= math.exp(rng.gauss(0, 0.001))
        out.append(price)
    return out


def _rows(coin_id: int, closes: list[float], skip: set[int] = frozenset(), spike: dict | None = None):
    spike = spike or {}
    prev = closes[0]
    for i, close in enumerate(closes):
        open_ = prev
        prev = close
        if i in skip:
            continue
        factor = spike.get(i, 1.0)
        c = close * factor
        yield CandleRow(coin_id, "1m", T0 + i * MINUTE, open_, max(open_, c), min(open_, c), c, None, 1e6)


@pytest.fixture
def coins():
    ids = coins_upsert(
        coins=[CoinIn("alpha", "alp", "Alpha"), CoinIn("beta", "bet", "Beta")],
        seen_at=T0 - timedelta(hours=1),
    )
    return ids["alpha"], ids["beta"]


@pytest.fixture
def now():
    return T0 + N * MINUTE + quality.grace()  # every written bucket is closed and past its grace


@pytest.fixture
def fresh_snapshots(coins, now):
    snapshots_upsert(rows=[SnapshotIn(c, 100.0, 1e9, 1, 1e6, 101, 99, 0.1, now - MINUTE, now) for c in coins])


@pytest.fixture
def sent(monkeypatch):
    """Capture re-fetch enqueues instead of sending them to the broker."""
    apply_async = mock.Mock()
    monkeypatch.setattr(tasks.refetch_range, "apply_async", apply_async)
    return apply_async


def _enqueued_flag_ids(sent_mock) -> list[int]:
    return [c.kwargs["kwargs"]["flag_id"] for c in sent_mock.call_args_list]


@pytest.mark.django_db(transaction=True)  # on_commit callbacks run: the enqueue path is the real one
def test_injected_gap_is_flagged_with_its_exact_range_and_refetched_once(coins, now, fresh_snapshots, sent):
    alpha, beta = coins
    candles_upsert(rows=_rows(alpha, _walk(1), skip={50, 51, 52, 53, 54}), source="test")
    candles_upsert(rows=_rows(beta, _walk(2)), source="test")

    result = quality.run_checks(now=now)

    flag = QualityFlag.objects.get()
    assert (flag.coin_id, flag.timeframe, flag.kind) == (alpha, "1m", "missing")
    assert (flag.range_start, flag.range_end) == (T0 + 50 * MINUTE, T0 + 55 * MINUTE)
    assert flag.details["buckets"] == 5
    assert result.new == 1 and result.refetches == 1
    assert _enqueued_flag_ids(sent) == [flag.pk]
    assert sent.call_args.kwargs["task_id"] == flag.refetch_task_id != ""

    # the next check finds the same gap: no second flag, no second re-fetch
    again = quality.run_checks(now=now)
    assert QualityFlag.objects.count() == 1
    assert (again.new, again.refetches) == (0, 0)

    # the re-fetch lands the missing buckets: the flag resolves itself
    candles_upsert(rows=_rows(alpha, _walk(1)), source="test")
    fixed = quality.run_checks(now=now)
    flag.refresh_from_db()
    assert fixed.resolved == 1
    assert flag.resolved_at is not None and flag.resolution.startswith("auto")


@pytest.mark.django_db(transaction=True)
def test_injected_spike_is_flagged_as_a_jump_on_exactly_its_bucket(coins, now, fresh_snapshots, sent):
    alpha, beta = coins
    candles_upsert(rows=_rows(alpha, _walk(3), spike={120: 1.25}), source="test")
    candles_upsert(rows=_rows(beta, _walk(4)), source="test")  # same volatility, no spike: no flag

    quality.run_checks(now=now)

    flag = QualityFlag.objects.get()
    assert (flag.coin_id, flag.kind) == (alpha, "jump")
    assert (flag.range_start, flag.range_end) == (T0 + 120 * MINUTE, T0 + 121 * MINUTE)
    assert flag.details["log_deviation"] == pytest.approx(math.log(1.25), rel=0.05)
    assert _enqueued_flag_ids(sent) == [flag.pk]

    # the corrected values arrive: the jump is no longer there and the flag resolves
    candles_upsert(rows=_rows(alpha, _walk(3)), source="test")
    quality.run_checks(now=now)
    flag.refresh_from_db()
    assert flag.resolved_at is not None


def _reference_jumps(logs: np.ndarray, *, z: float, min_jump: float) -> tuple[np.ndarray, float]:
    """Independent numpy statement of the rule the SQL implements, for one series:
    (flagged mask, sigma) from an (n, 4) array of log open/high/low/close."""
    close = logs[:, 3]
    returns = np.diff(close)
    sigma = max(1.4826 * float(np.median(np.abs(returns - np.median(returns)))), quality.SCALE_FLOOR)
    n = len(close)
    padded = np.concatenate([[np.nan, np.nan], close, [np.nan, np.nan]])
    neighbours = np.stack([padded[0:n], padded[1 : n + 1], padded[3 : n + 3], padded[4 : n + 4]], axis=1)
    ref = np.nanmedian(neighbours, axis=1)
    deviation = np.max(np.abs(logs - ref[:, None]), axis=1)
    return deviation > max(z * sigma, min_jump), sigma


@pytest.mark.django_db
@pytest.mark.parametrize("z", [6.0, 12.0])
def test_jump_check_matches_the_reference_rule_and_scales_with_each_series_volatility(settings, z):
    settings.INGESTION_QUALITY_JUMP_Z = z
    settings.INGESTION_QUALITY_JUMP_MIN = 0.0
    ids = coins_upsert(coins=[CoinIn(f"c{v}", f"c{v}", f"C{v}") for v in range(3)])
    rng = np.random.default_rng(5)
    expected: dict[int, list[datetime]] = {}
    for k, (vol, moves) in enumerate([(0.001, {150: 8}), (0.02, {40: 8, 41: -8, 299: 20}), (0.005, {})]):
        coin = ids[f"c{k}"]
        close = np.cumsum(rng.normal(0, vol, 300))
        for i, m in moves.items():
            close[i] += m * vol  # an m-sigma move of this series
        opens = np.concatenate([[close[0]], close[:-1]])
        logs = np.stack([opens, np.maximum(opens, close), np.minimum(opens, close), close], axis=1)
        candles_upsert(
            rows=[
                CandleRow(coin, "1m", T0 + i * MINUTE, *np.exp(logs[i]).tolist()) for i in range(len(close))
            ],
            source="test",
        )
        mask, sigma = _reference_jumps(logs, z=z, min_jump=0.0)
        assert sigma == pytest.approx(vol, rel=0.3)
        expected[coin] = [T0 + int(i) * MINUTE for i in np.flatnonzero(mask)]

    found = quality.find_jumps(
        now=T0 + 300 * MINUTE, coin_ids=list(ids.values()), timeframe="1m", lookback=timedelta(hours=6)
    )
    got: dict[int, list[datetime]] = {c: [] for c in ids.values()}
    for f in found:
        t = f.range_start
        while t < f.range_end:
            got[f.coin_id].append(t)
            t += MINUTE
    assert got == expected
    if z == 6.0:  # the injected moves are found in each series despite 20x different volatility
        assert T0 + 150 * MINUTE in got[ids["c0"]]
        assert T0 + 299 * MINUTE in got[ids["c1"]]
    else:  # an 8-sigma move is plausible at z = 12
        assert T0 + 150 * MINUTE not in got[ids["c0"]]


@pytest.mark.django_db(transaction=True)
def test_stale_coin_is_flagged_from_its_last_update_and_resolves_when_fresh(coins, now, sent):
    alpha, beta = coins
    last = now - quality.stale_after() - timedelta(minutes=7, seconds=20)
    snapshots_upsert(
        rows=[
            SnapshotIn(alpha, 100.0, 1e9, 1, 1e6, 101, 99, 0.1, last, now),
            SnapshotIn(beta, 100.0, 1e9, 2, 1e6, 101, 99, 0.1, now - MINUTE, now),
        ]
    )
    quality.run_checks(now=now)

    stale = QualityFlag.objects.get(kind="stale")
    assert stale.coin_id == alpha
    minute = last.replace(second=0, microsecond=0)
    assert (stale.range_start, stale.range_end) == (minute + MINUTE, now.replace(second=0, microsecond=0))
    assert stale.pk in _enqueued_flag_ids(sent)

    snapshots_upsert(rows=[SnapshotIn(alpha, 100.0, 1e9, 1, 1e6, 101, 99, 0.1, now, now)])
    quality.run_checks(now=now + MINUTE)
    stale.refresh_from_db()
    assert stale.resolved_at is not None


@pytest.mark.django_db
def test_refetch_task_backfills_exactly_the_flag_range(coins, monkeypatch):
    alpha, _ = coins
    flag = QualityFlag.objects.create(
        coin_id=alpha,
        timeframe="1m",
        kind="missing",
        range_start=T0 + 50 * MINUTE,
        range_end=T0 + 55 * MINUTE,
    )
    calls = []

    def backfill(client, **kwargs):
        calls.append((client, kwargs))
        return {"calls": 1, "rows_written": 5}

    fake = types.SimpleNamespace(backfill=backfill)
    monkeypatch.setitem(sys.modules, "ingestion.pipeline", fake)
    monkeypatch.setattr(ingestion, "pipeline", fake, raising=False)
    monkeypatch.setattr(tasks, "upstream_client", lambda: contextlib.nullcontext("client"))

    result = tasks.refetch_range.apply(kwargs={"flag_id": flag.pk})

    assert result.successful(), result.traceback
    assert calls == [
        (
            "client",
            {"coins": ["alpha"], "timeframe": "1m", "start": T0 + 50 * MINUTE, "end": T0 + 55 * MINUTE},
        )
    ]
    flag.refresh_from_db()
    assert flag.refetch_finished_at is not None
    run = JobRun.objects.get(job="ingestion.refetch_range")
    assert run.task_id == result.id
    assert (run.calls, run.rows_written, run.outcome) == (1, 5, "success")


@pytest.mark.django_db(transaction=True)
def test_refetches_after_an_outage_are_spread_over_several_checks(now, sent, settings):
    # Every coin has the same gap (the platform was down): one check schedules at most
    # INGESTION_REFETCH_PER_RUN re-fetches, the following checks take the rest, none twice.
    settings.INGESTION_REFETCH_PER_RUN = 2
    ids = coins_upsert(
        coins=[CoinIn(f"coin{i}", f"c{i}", f"Coin {i}") for i in range(5)], seen_at=T0 - timedelta(hours=1)
    )
    snapshots_upsert(
        rows=[SnapshotIn(c, 100.0, 1e9, 1, 1e6, 101, 99, 0.1, now - MINUTE, now) for c in ids.values()]
    )
    for i, coin_id in enumerate(ids.values()):
        candles_upsert(rows=_rows(coin_id, _walk(10 + i), skip={60, 61, 62}), source="test")

    runs = [quality.run_checks(now=now) for _ in range(4)]

    assert [(r.refetches, r.refetches_deferred) for r in runs] == [(2, 3), (2, 1), (1, 0), (0, 0)]
    flag_ids = _enqueued_flag_ids(sent)
    assert sorted(flag_ids) == sorted(QualityFlag.objects.values_list("pk", flat=True))
    assert QualityFlag.objects.count() == 5
