"""The history job (ingestion.history): newest first by tier, resumable through watermarks, stops at a
coin's first data, flags and re-fetches gaps inside history, leaves the live work its budget, and
shows its progress (admin, metrics, command). The simulator runs in process; time is simulated."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from django.conf import settings as django_settings
from django.core.management import call_command
from django.urls import reverse

from ingestion import history, pipeline, quality, tasks
from ingestion.coingecko import RateBudget, RetryPolicy
from ingestion.models import QualityFlag
from ingestion.simulator import ManualClock, Simulator, SimulatorConfig
from marketdata import selectors, services
from marketdata.models import Coin, SeriesWatermark
from tests.conftest import simulator_client
from tests.metrics.conftest import TOKEN, samples, value

NOW = datetime(2026, 11, 29, 12, 17, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.005, retry_after_cap=0.005)


@pytest.fixture
def history_settings(settings):
    # a short history keeps the test fast: daily since 2025-06-01 (4 ranges), hourly 40 days (2 ranges)
    settings.INGESTION_HISTORY_START = "2025-06-01"
    settings.INGESTION_HISTORY_HOURLY_DAYS = 40
    settings.INGESTION_HISTORY_TIERS = "2"
    return settings


@pytest.fixture
def sim():
    # upstream refreshes every 10-15 minutes (not 20-60 s): years of candles cost the simulator less
    return Simulator(SimulatorConfig(coins=30, seed=9, tick_period=(600.0, 900.0)), clock=ManualClock(NOW))


@pytest.fixture
def client(sim):
    c = simulator_client(sim, clock=ManualClock(NOW), retry=FAST_RETRY)
    yield c
    c.close()


@pytest.fixture
def redis_conn():
    conn = redis_lib.Redis.from_url(django_settings.REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def ranked(db, client):
    """The sim's universe with snapshots (market-cap ranks) from one refresh; upstream ids by rank."""
    pipeline.refresh_markets(client, now=NOW)
    return [upstream for _, upstream, _ in selectors.coins_by_rank()]


def _fill(client, **kwargs):
    return history.fill(client, now=NOW, seconds=600, **kwargs)


def test_fill_goes_newest_first_by_tier_and_resumes_from_watermarks(history_settings, client, ranked):
    top3 = ranked[:3]
    seen: list[tuple[str, str, datetime, datetime]] = []
    original = pipeline.backfill_range

    def spy(client, **kw):
        seen.append((kw["upstream_id"], kw["timeframe"], kw["start"], kw["end"]))
        return original(client, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(history, "backfill_range", spy)
        first = _fill(client, top=3, max_ranges=7)
        assert first.details["stopped"] == "max_ranges"
        second = _fill(client, top=3)  # a new run (as after a restart) goes on from the watermarks

    # every range is fetched once: an interrupted fill repeats nothing
    assert len(seen) == len(set(seen)) == 3 * (4 + 2)
    assert first.calls + second.calls == 2 * len(seen)
    # tier 1 (ranks 1-2) completely before tier 2 (rank 3); inside a tier the newest ranges first
    assert {c for c, *_ in seen[:12]} == set(top3[:2]) and {c for c, *_ in seen[12:]} == {top3[2]}
    tier1 = seen[:12]
    ends = [end for *_, end in tier1]
    assert ends == sorted(ends, reverse=True)
    assert [tf for _, tf, _, end in tier1 if end == NOW] == ["1d", "1d", "1h", "1h"]  # daily first
    # ranges are whole days and within one call's limit; each series is contiguous back to the target
    for _, tf, start, end in seen:
        assert start == start.replace(hour=0, minute=0)
        assert end - start <= pipeline.backfill_chunk_size(tf)
    for upstream in top3:
        coin_id = Coin.objects.get(upstream_id=upstream).pk
        daily = SeriesWatermark.objects.get(coin_id=coin_id, timeframe="1d", source="history")
        hourly = SeriesWatermark.objects.get(coin_id=coin_id, timeframe="1h", source="history")
        assert (daily.since, daily.until) == (datetime(2025, 6, 1, tzinfo=UTC), NOW)
        assert (hourly.since, hourly.until) == ((NOW - 40 * DAY).replace(hour=0, minute=0), NOW)
        candles = selectors.candles_range(coin_id=coin_id, timeframe="1h", limit=100_000, newest_first=False)
        assert (
            len(candles) == (NOW.replace(minute=0) - hourly.since) // HOUR + 1
        )  # no hole, open one included
        assert all(c[7] for c in candles)  # market cap from /market_chart/range on every hourly candle
        days = selectors.candles_range(coin_id=coin_id, timeframe="1d", limit=100_000, newest_first=False)
        assert days[0][0] == daily.since and len(days) == (NOW - daily.since) // DAY + 1
    # nothing left: a third run makes no call
    assert _fill(client, top=3).calls == 0


def test_daily_history_stops_at_the_coins_first_data(db, settings):
    settings.INGESTION_HISTORY_START = "2018-02-09"
    sim = Simulator(SimulatorConfig(coins=300, seed=9, tick_period=(600.0, 900.0)), clock=ManualClock(NOW))
    client = simulator_client(sim, clock=ManualClock(NOW), retry=FAST_RETRY)
    pipeline.refresh_markets(client, now=NOW)
    ranked = [upstream for _, upstream, _ in selectors.coins_by_rank()]
    listed = {cid: sim.universe.listed_ms[sim.universe.index[cid]] for cid in ranked}
    young = max(ranked, key=lambda c: listed[c])  # the most recently listed coin
    first_day = datetime.fromtimestamp(listed[young] // 1000, UTC).replace(hour=0, minute=0, second=0)
    assert first_day > datetime(2023, 1, 1, tzinfo=UTC)
    summary = _fill(client, coins=[young], timeframes=("1d",))
    coin_id = Coin.objects.get(upstream_id=young).pk
    mark = SeriesWatermark.objects.get(coin_id=coin_id, timeframe="1d", source="history")
    assert mark.start_reached and mark.since <= first_day
    days = selectors.candles_range(coin_id=coin_id, timeframe="1d", limit=100_000, newest_first=False)
    assert days[0][0] == first_day
    # ranges down to the listing, then the one empty range before it, and no further
    expected, mark_ = 0, None
    while (rng := history.next_range("1d", mark_, now=NOW)) is not None:
        expected += 1
        if rng[1] <= first_day:
            break
        mark_ = selectors.SeriesMark(rng[0], NOW, False)
    assert summary.details["ranges"] == expected and summary.calls == 2 * expected
    assert mark.since < first_day
    marks = selectors.series_marks(source="history", coin_ids=[coin_id])
    assert history.next_range("1d", marks[(coin_id, "1d")], now=NOW) is None


def test_gaps_inside_history_are_flagged_and_refetched_through_the_quality_path(
    history_settings, sim, client, ranked, monkeypatch, django_capture_on_commit_callbacks
):
    coin = ranked[0]
    sim.set_faults(gap_rate=0.02, seed=3)  # upstream leaves out 2 % of the candles and chart points
    sent: list[int] = []
    monkeypatch.setattr(
        tasks.refetch_range, "apply_async", lambda kwargs, task_id: sent.append(kwargs["flag_id"])
    )
    with django_capture_on_commit_callbacks(execute=True):
        summary = _fill(client, coins=[coin])
    coin_id = Coin.objects.get(upstream_id=coin).pk
    flags = list(QualityFlag.objects.filter(coin_id=coin_id, kind="missing", resolved_at=None))
    assert summary.details["gaps_flagged"] == len(flags) > 3
    # gaps deep inside history (far beyond the periodic check's lookback) are found too
    assert min(f.range_start for f in flags if f.timeframe == "1d") < NOW - 365 * DAY
    assert sorted(sent) == sorted(f.pk for f in flags)  # each one's re-fetch scheduled

    sim.set_faults(gap_rate=0.0)
    monkeypatch.setattr(tasks, "upstream_client", lambda: contextlib.nullcontext(client))
    for flag_id in sent:
        result = tasks.refetch_range.apply(kwargs={"flag_id": flag_id})
        assert result.successful(), result.traceback
    quality.run_checks(now=NOW, coin_ids=[coin_id], schedule_refetch=False)
    assert not QualityFlag.objects.filter(coin_id=coin_id, resolved_at=None, kind="missing").exists()
    for tf, since in (
        ("1d", datetime(2025, 6, 1, tzinfo=UTC)),
        ("1h", (NOW - 40 * DAY).replace(hour=0, minute=0)),
    ):
        step = DAY if tf == "1d" else HOUR
        stored = selectors.candles_range(coin_id=coin_id, timeframe=tf, limit=100_000, newest_first=False)
        assert [c[0] for c in stored] == [since + i * step for i in range(len(stored))]  # gap-free


def test_history_takes_calls_only_above_the_reserve(redis_conn):
    key = f"cgtest:{uuid.uuid4().hex}"
    history_budget = RateBudget(redis_conn, limit=10, window=60, key=key, reserve=4, max_wait=0.01)
    live = RateBudget(redis_conn, limit=10, window=60, key=key)
    granted = 0
    with contextlib.suppress(Exception):
        for _ in range(10):
            history_budget.acquire()
            granted += 1
    assert granted == 6  # history stops at limit - reserve
    assert [live.try_acquire()[0] for _ in range(4)] == [0.0] * 4  # the reserve is the live work's
    assert live.try_acquire()[0] > 0  # and then the budget is spent


def test_live_refresh_never_waits_while_history_saturates_the_budget(db, sim, redis_conn):
    """A history client hammering the shared budget in another thread takes every call it may; the
    live refresh, which needs fewer calls per window than the reserve, is granted each call at once."""
    prefix = f"cgtest:{uuid.uuid4().hex[:8]}"
    limit, window, reserve = 12, 1.5, 6

    def client_with(reserve_):
        c = simulator_client(sim, clock=ManualClock(NOW), retry=FAST_RETRY, prefix=prefix)
        c.budget = RateBudget(
            redis_lib.Redis.from_url(django_settings.REDIS_URL),
            limit=limit, window=window, key=f"{prefix}:budget", reserve=reserve_,
        )  # fmt: skip
        return c

    hist, live = client_with(reserve), client_with(0)
    stop = threading.Event()
    history_calls = []

    def hammer():
        while not stop.is_set():
            hist.ohlc_range("bitcoin", NOW - 2 * DAY, NOW, interval="hourly")
            history_calls.append(time.monotonic())

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    try:
        time.sleep(window)  # history has filled its share of the window
        for _ in range(3):  # three refresh cycles: 2 pages each (30 coins, then the empty page)
            summary = pipeline.refresh_markets(live, now=NOW)
            assert summary.details["coins_polled"] == 30 and not summary.details["failed_pages"]
            time.sleep(window / 3)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert live.budget.waited_seconds == 0
    assert hist.budget.waited_seconds > 0 and len(history_calls) >= limit - reserve
    hist.close()
    live.close()


def test_budget_reserve_follows_the_universe(settings):
    settings.INGESTION_HISTORY_RESERVE = 0
    settings.INGESTION_REFETCH_PER_RUN = 50
    # 15,000 coins: 60 + 1 markets pages, 6 fast-refresh calls, 20 re-fetch calls a minute; kept twice
    assert history.live_calls_per_window(active_coins=15_000, window=60) == 87
    assert history.budget_reserve(limit=500, window=60, active_coins=15_000) == 174
    assert history.budget_reserve(limit=500, window=60, active_coins=100) == 56  # 2 x (1 + 1 + 6 + 20)
    assert history.budget_reserve(limit=1000, window=60, active_coins=100) == 100  # at least 10 %
    assert history.budget_reserve(limit=50, window=60, active_coins=15_000) == 49  # history keeps 1
    settings.INGESTION_HISTORY_RESERVE = 40
    assert history.budget_reserve(limit=500, window=60, active_coins=15_000) == 40


def test_watermark_extend_grows_only_a_contiguous_range(db):
    coin_id = services.coins_upsert(coins=[services.CoinIn("alpha", "a", "A")])["alpha"]
    t = datetime(2026, 1, 1, tzinfo=UTC)
    kw = {"coin_id": coin_id, "timeframe": "1d", "source": "history"}
    assert services.series_watermark_extend(**kw, since=t, until=t + 10 * DAY)
    assert not services.series_watermark_extend(**kw, since=t - 30 * DAY, until=t - 20 * DAY)  # a hole
    assert services.series_watermark_extend(**kw, since=t - 5 * DAY, until=t)  # touches: grows back
    assert not services.series_watermark_extend(**kw, since=t, until=t + 2 * DAY)  # inside: nothing
    assert services.series_watermark_extend(**kw, since=t - 6 * DAY, until=t - 5 * DAY, start_reached=True)
    mark = SeriesWatermark.objects.get(**kw)
    assert (mark.since, mark.until, mark.start_reached) == (t - 6 * DAY, t + 10 * DAY, True)


def test_progress_in_admin_metrics_and_estimate(history_settings, client, ranked, admin_client, capsys):
    _fill(client, top=2)
    _fill(client, coins=[ranked[2]], max_ranges=1)  # one more coin started, not complete
    history_settings.METRICS_TOKEN = TOKEN
    response = admin_client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    scraped = samples(response.content.decode())
    progress = {p.timeframe: p for p in history.progress_all(now=NOW)}
    for tf in ("1d", "1h"):
        assert value(scraped, "candlestack_history_series", timeframe=tf) == 30
        assert value(scraped, "candlestack_history_series_complete", timeframe=tf) == 2
        assert progress[tf].started == 3 - (tf == "1h")  # the third coin's first range was daily
    assert value(scraped, "candlestack_history_remaining_calls", timeframe="1h") > 0
    assert {labels for (name, labels) in scraped if name.startswith("candlestack_history_")} == {
        frozenset({("timeframe", "1d")}),
        frozenset({("timeframe", "1h")}),
    }  # bounded labels: timeframe only

    page = admin_client.get(reverse("admin:ingestion_historyprogress_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="history-totals"' in html and "Filled back to" in html and "filling" in html
    for state, rows in (("complete", 4), ("filling", 1)):
        listed = admin_client.get(reverse("admin:ingestion_historyprogress_changelist") + f"?state={state}")
        assert listed.context["cl"].result_count == rows

    call_command("fill_history", "--estimate")
    out = capsys.readouterr().out
    assert "1d: 2/30 series complete" in out and "h left" in out


def test_fill_history_task_runs_one_at_a_time(history_settings, client, ranked, monkeypatch):
    from apiplatform.jobs.models import JobRun

    monkeypatch.setattr(history, "history_client", lambda **kw: contextlib.nullcontext(client))
    from marketdata.tasks import refresh_screener

    screeners: list[dict] = []
    monkeypatch.setattr(refresh_screener, "apply_async", lambda kwargs: screeners.append(kwargs))
    real_fill = history.fill
    monkeypatch.setattr(history, "fill", lambda client, **kw: real_fill(client, now=NOW, top=kw["top"]))
    with history.exclusive(60) as held:
        assert held
        busy = tasks.fill_history.apply(kwargs={"top": 1})
        assert busy.result == {"skipped": "another run holds the history lock"}
    done = tasks.fill_history.apply(kwargs={"top": 1})
    assert done.successful(), done.traceback
    run = JobRun.objects.get(job="ingestion.fill_history")
    assert (run.outcome, run.task_id, run.calls) == ("success", done.id, 12)
    assert done.result["series_completed"] == 2 and done.result["ranges"] == 6
    assert screeners == [
        {"timeframes": ["1h", "4h", "1d", "1w"]}
    ]  # the new history (and its roll-ups) reach the screener at once
