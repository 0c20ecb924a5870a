"""History, automatically: daily candles since each coin's first upstream data and hourly candles for
the last ``INGESTION_HISTORY_HOURLY_DAYS`` (90) days, for every active coin, newest first.

One run (:func:`fill`) plans the next range of every series (coin and timeframe) from its history
watermark (``marketdata.SeriesWatermark``, source ``history``: ``[since, until)`` fetched, and
``start_reached`` once upstream has nothing older) and works through them in priority order:

1. market-cap tier (``INGESTION_HISTORY_TIERS``, "100,1000": the top 100 coins first, then the top
   1,000, then the rest);
2. newest range first (a range ending now before one ending 31 days ago before one ending 180 days
   ago...), so every coin of a tier gets its recent history before any coin gets its old history;
3. daily before hourly for ranges ending at the same time (1h history is rolled up into 1d, so the
   roll-up has the last word), then by rank.

Each range is one :func:`ingestion.pipeline.backfill_range` (one /ohlc/range call of at most 31
hourly or 180 daily days, one /market_chart/range call for market cap and 24 h volume, the write
through ``marketdata.services.candles_upsert`` with source ``history``, the watermark in the same
transaction). A run stops after ``INGESTION_HISTORY_RUN_SECONDS`` or when nothing is left; the next
run resumes from the watermarks, so a restart, a killed worker or a deploy loses at most the range in
flight (which is written again, idempotently).

Upstream budget: the job's client takes a call only while the shared budget has more than
:func:`budget_reserve` calls left in the window (``RateBudget(reserve=...)``), so the live refresh,
which takes calls without a reserve, never waits because of history.

Gaps: each range written is checked for missing buckets at once (:func:`ingestion.quality.check_range`,
with one bucket of overlap with the newer range); a gap becomes a quality flag whose re-fetch goes
through the usual ``ingestion.refetch_range`` → ``pipeline.backfill`` path.

Only one run works at a time (a Redis lock); a second one returns at once.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apiplatform import redis_access
from ingestion import quality
from ingestion.coingecko import BudgetTimeout, CoinGeckoError
from ingestion.pipeline import HISTORY_SOURCE, Summary, backfill_chunk_size, backfill_range
from marketdata import selectors
from marketdata.models import TIMEFRAME_DELTA
from marketdata.services import bucket_floor

logger = logging.getLogger(__name__)

#: The timeframes filled, in the order of equal-priority ranges (daily first: see the module doc).
TIMEFRAMES = ("1d", "1h")
#: the screener timeframes a history fill changes: its own and their roll-ups (1h → 4h, 1d → 1w)
SCREENER_TIMEFRAMES = ("1h", "4h", "1d", "1w")
DAY = timedelta(days=1)
#: Markets pages (250 coins each) the live refresh reads per minute, plus the empty last page.
MARKETS_PER_PAGE = 250
#: Calls a minute kept for the fast /simple/price refresh of the top coins (up to 2 calls every 20 s).
FAST_REFRESH_CALLS_PER_MINUTE = 6
#: The share of the budget kept for live work at least, whatever the universe's size.
MIN_RESERVE_SHARE = 0.1
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


# --- targets ---------------------------------------------------------------------------------------
def history_start() -> datetime:
    """The oldest time history is fetched from (CoinGecko's oldest /ohlc/range data)."""
    day = datetime.fromisoformat(settings.INGESTION_HISTORY_START)
    return bucket_floor("1d", day if day.tzinfo else day.replace(tzinfo=UTC))


def target_start(timeframe: str, now: datetime) -> datetime:
    """The oldest bucket wanted of ``timeframe``: daily since :func:`history_start`, hourly for the last
    ``INGESTION_HISTORY_HOURLY_DAYS`` days (from the start of that day, so every rolled-up day is whole)."""
    if timeframe == "1d":
        return history_start()
    days = timedelta(days=settings.INGESTION_HISTORY_HOURLY_DAYS)
    return max(history_start(), bucket_floor("1d", now - days))


def tiers() -> list[int]:
    """Rank bounds of the priority tiers ("100,1000" → [100, 1000])."""
    return sorted(int(p) for p in str(settings.INGESTION_HISTORY_TIERS).replace(" ", "").split(",") if p)


def _tier(rank: int | None, bounds: list[int]) -> int:
    if rank is None:
        return len(bounds)
    return next((i for i, bound in enumerate(bounds) if rank <= bound), len(bounds))


def next_range(timeframe: str, mark, *, now: datetime) -> tuple[datetime, datetime] | None:
    """The next range of a series to fetch, newest first, or None when it is complete.

    No watermark yet: the newest range, ending now, starting at a day boundary (at most one call's
    range). Otherwise the range just before ``since``, down to the target start. Ranges are whole days.
    """
    target = target_start(timeframe, now)
    chunk = backfill_chunk_size(timeframe)
    if mark is None or mark.since is None:
        lo = max(bucket_floor("1d", now - chunk) + DAY, target)
        return (lo, now) if lo < now else None
    if mark.start_reached or mark.since <= target:
        return None
    return max(mark.since - chunk, target), mark.since


# --- the upstream budget's reserve ------------------------------------------------------------------
def live_calls_per_window(*, active_coins: int, window: float) -> int:
    """Calls the live work takes per budget window: the markets pages of the universe (and the empty
    last page) every minute, the fast refresh, and the quality re-fetches (2 calls each, at most
    ``INGESTION_REFETCH_PER_RUN`` per 5-minute check)."""
    per_minute = (
        math.ceil(active_coins / MARKETS_PER_PAGE)
        + 1
        + FAST_REFRESH_CALLS_PER_MINUTE
        + math.ceil(settings.INGESTION_REFETCH_PER_RUN * 2 / 5)
    )
    return math.ceil(per_minute * window / 60.0)


def budget_reserve(*, limit: int, window: float, active_coins: int) -> int:
    """Calls per window history leaves to the live work: ``INGESTION_HISTORY_RESERVE`` if set, else
    twice what the live work takes (:func:`live_calls_per_window`) and at least 10 % of the budget.
    Always below the limit (history keeps at least one call per window)."""
    configured = settings.INGESTION_HISTORY_RESERVE
    if configured > 0:
        reserve = configured
    else:
        live = live_calls_per_window(active_coins=active_coins, window=window)
        reserve = max(math.ceil(limit * MIN_RESERVE_SHARE), 2 * live)
    return max(0, min(reserve, limit - 1))


# --- one run -----------------------------------------------------------------------------------------
@dataclass(order=True)
class _Work:
    key: tuple
    coin_id: int = field(compare=False)
    upstream_id: str = field(compare=False)
    rank: int | None = field(compare=False)
    timeframe: str = field(compare=False)
    start: datetime = field(compare=False)
    end: datetime = field(compare=False)


@dataclass
class Progress:
    """Counters of one run, logged while it works and returned in its summary."""

    ranges: int = 0
    calls: int = 0
    candles: int = 0
    completed: int = 0  # series that reached their target in this run
    gaps: int = 0  # missing ranges found (quality flags raised)
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "ranges": self.ranges,
            "calls": self.calls,
            "candles": self.candles,
            "series_completed": self.completed,
            "gaps_flagged": self.gaps,
            "failed": self.failed,
        }


def plan(
    *,
    now: datetime,
    top: int | None = None,
    coins: Iterable[str] | None = None,
    timeframes: Iterable[str] = TIMEFRAMES,
) -> list[_Work]:
    """The next range of every series that is not complete, as a heap in priority order (2 queries)."""
    ranked = selectors.coins_by_rank(limit=top, upstream_ids=list(coins) if coins is not None else None)
    marks = selectors.series_marks(source=HISTORY_SOURCE, coin_ids=[c for c, _, _ in ranked])
    bounds = tiers()
    order = {tf: i for i, tf in enumerate(TIMEFRAMES)}
    heap: list[_Work] = []
    for position, (coin_id, upstream_id, rank) in enumerate(ranked):
        for tf in timeframes:
            nxt = next_range(tf, marks.get((coin_id, tf)), now=now)
            if nxt is not None:
                heap.append(_work(coin_id, upstream_id, rank, tf, nxt, bounds, order, position))
    heapq.heapify(heap)
    return heap


def _work(coin_id, upstream_id, rank, tf, rng, bounds, order, position) -> _Work:
    lo, hi = rng
    key = (_tier(rank, bounds), -hi.timestamp(), order[tf], position)
    return _Work(key, coin_id, upstream_id, rank, tf, lo, hi)


def fill(
    client,
    *,
    now: datetime | None = None,
    top: int | None = None,
    coins: Iterable[str] | None = None,
    timeframes: Iterable[str] = TIMEFRAMES,
    seconds: float | None = None,
    max_ranges: int | None = None,
    on_progress: Callable[[Progress, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Summary:
    """Fetch history ranges in priority order until ``seconds`` passed (default
    ``INGESTION_HISTORY_RUN_SECONDS``; a range in flight is finished), ``max_ranges`` were fetched,
    or every series is complete. ``top``/``coins`` limit the run to the top N coins / these upstream
    ids. ``on_progress(progress, ranges_left)`` is called after each range. Returns the run's summary.
    """
    now = now or timezone.now()
    timeframes = tuple(timeframes)
    budget = seconds if seconds is not None else float(settings.INGESTION_HISTORY_RUN_SECONDS)
    deadline = clock() + budget
    summary = Summary()
    progress = Progress()
    heap = plan(now=now, top=top, coins=coins, timeframes=timeframes)
    summary.details["planned_series"] = len(heap)
    bounds = tiers()
    order = {tf: i for i, tf in enumerate(TIMEFRAMES)}
    skip: set[int] = set()  # coins that failed upstream in this run: left for the next run
    while heap and clock() < deadline and (max_ranges is None or progress.ranges < max_ranges):
        work = heapq.heappop(heap)
        if work.coin_id in skip:
            continue
        calls_before = summary.calls
        try:
            fetched = backfill_range(
                client,
                coin_id=work.coin_id,
                upstream_id=work.upstream_id,
                timeframe=work.timeframe,
                start=work.start,
                end=work.end,
                now=now,
                summary=summary,
                floor=target_start(work.timeframe, now) if work.timeframe == "1d" else None,
            )
        except BudgetTimeout as exc:
            logger.info("history: no upstream budget left for history (%s): the next run goes on", exc)
            summary.details["stopped"] = "budget"
            break
        except CoinGeckoError as exc:
            logger.warning("history %s %s [%s, %s) failed: %s", work.upstream_id, work.timeframe,
                           work.start, work.end, exc)  # fmt: skip
            progress.failed.append(work.upstream_id)
            skip.add(work.coin_id)
            continue
        progress.ranges += 1
        progress.calls += summary.calls - calls_before
        progress.candles += fetched.candles
        summary.rows_written += fetched.result.written
        summary.rejects += fetched.result.rejected
        size = TIMEFRAME_DELTA[work.timeframe]
        mark = selectors.SeriesMark(work.start, work.end, fetched.start_reached)
        nxt = next_range(work.timeframe, mark, now=now)
        # the oldest range of a series filled down to its target (not to the coin's first data, where
        # a later first bucket is the listing): the series must begin at the range's start
        first = fetched.first_bucket
        expected = work.start if nxt is None and first is not None and first - work.start < 2 * size else None
        check_end = min(work.end + size, bucket_floor(work.timeframe, now - quality.grace()))
        progress.gaps += quality.check_range(
            coin_id=work.coin_id, timeframe=work.timeframe, start=work.start, end=check_end, now=now,
            expected_start=expected,
        )  # fmt: skip
        if nxt is None:
            progress.completed += 1
        else:
            heapq.heappush(heap, _work(work.coin_id, work.upstream_id, work.rank, work.timeframe, nxt,
                                       bounds, order, work.key[3]))  # fmt: skip
        if on_progress is not None:
            on_progress(progress, len(heap))
    if heap and "stopped" not in summary.details:
        summary.details["stopped"] = "time" if clock() >= deadline else "max_ranges"
    summary.details.update(progress.as_dict(), series_left_in_plan=len(heap))
    if progress.failed:
        summary.details["partial"] = True
    return summary


# --- one run at a time --------------------------------------------------------------------------------
@contextmanager
def exclusive(ttl_seconds: float) -> Iterator[bool]:
    """Hold the history lock (shared through Redis) for at most ``ttl_seconds``; yields whether this
    caller holds it (False: another run is working)."""
    r = redis_access.client("ingestion")
    key = redis_access.key("history", "lock")
    token = uuid.uuid4().hex
    held = bool(r.set(key, token, nx=True, px=max(1000, int(ttl_seconds * 1000))))
    try:
        yield held
    finally:
        if held:
            r.eval(_RELEASE, 1, key, token)


def history_client(**overrides):
    """The CoinGecko client for history: the shared budget, with the live work's reserve."""
    from ingestion.coingecko import CoinGeckoClient

    active = len(selectors.coin_ids_active())
    reserve = budget_reserve(
        limit=settings.COINGECKO_RATE_LIMIT_PER_MIN,
        window=settings.COINGECKO_RATE_WINDOW,
        active_coins=active,
    )
    return CoinGeckoClient.from_settings(budget_reserve=reserve, **overrides)


def progress_all(*, now: datetime | None = None) -> list[selectors.HistoryProgress]:
    """How far the fill is, per timeframe, over the active coins (1 query per timeframe)."""
    now = now or timezone.now()
    return [
        selectors.history_progress(
            source=HISTORY_SOURCE,
            timeframe=tf,
            target=target_start(tf, now),
            now=now,
            chunk=backfill_chunk_size(tf),
        )
        for tf in TIMEFRAMES
    ]
