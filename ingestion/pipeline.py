"""The ingestion pipeline as plain functions (no Celery): the tasks in ``ingestion.tasks`` and the
management commands call these.

- :func:`refresh_markets` — one cycle: /coins/markets for the whole universe (pages of 250 until an
  empty page) → coins, snapshots, ticks → 1m candles → close ended buckets → roll-ups.
- :func:`backfill` — history from /ohlc/range (+ /market_chart/range for 24h volume and market
  cap), resumable through per-series watermarks, idempotent.
- :func:`sync_universe` — /coins/list: new coins added, delisted ones marked inactive, never deleted.

Each returns a summary with ``calls``, ``rows_written``, ``rejects`` and ``details``. The market
data tables are read through :mod:`marketdata.selectors` and written through :mod:`marketdata.services`.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from apiplatform import telemetry
from ingestion.coingecko import CoinGeckoError, ohlc_bucket_start
from marketdata import events, selectors, services
from marketdata.models import TIMEFRAME_DELTA

logger = logging.getLogger(__name__)

#: Pages of /coins/markets that may fail in a row before the cycle gives up walking.
MAX_FAILED_PAGES_IN_A_ROW = 3


@dataclass
class Summary:
    calls: int = 0
    rows_written: int = 0
    rejects: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "rows_written": self.rows_written,
            "rejects": self.rejects,
            **self.details,
        }


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


# --- refresh ---------------------------------------------------------------------------------------
def refresh_markets(
    client, *, now: datetime | None = None, per_page: int = 250, max_pages: int = 400
) -> Summary:
    """One refresh cycle for the whole universe; ``now`` is the poll time (defaults to the clock).

    A page that fails (after the client's retries) is skipped: its coins are not polled this minute
    (a gap for the quality check), the other pages still land. Returns what it did.
    """
    started = time.monotonic()
    now = now or timezone.now()
    summary = Summary()
    records = []
    failed_pages: list[int] = []
    page = 0
    in_a_row = 0
    seen: set[str] = set()
    while page < max_pages:
        page += 1
        summary.calls += 1
        try:
            result = client.coins_markets_page(page, per_page=per_page)
        except CoinGeckoError as exc:
            failed_pages.append(page)
            in_a_row += 1
            logger.warning("refresh_markets: page %d failed: %s", page, exc)
            if in_a_row >= MAX_FAILED_PAGES_IN_A_ROW:
                break
            continue
        in_a_row = 0
        summary.rejects += len(result.rejects)
        if not result.records and not result.rejects:
            break  # the empty page: end of the universe
        for rec in result.records:
            if rec.id not in seen:  # a coin that moved between pages while walking shows up twice
                seen.add(rec.id)
                records.append(rec)
    summary.details.update(pages=page, failed_pages=failed_pages, coins_polled=len(records))
    if records:
        summary.details.update(_write_cycle(records, now=now, summary=summary))
    summary.details["duration_s"] = round(time.monotonic() - started, 3)
    logger.info("refresh_markets: %s", summary.as_dict())
    return summary


@transaction.atomic
def _write_cycle(records, *, now: datetime, summary: Summary) -> dict[str, Any]:
    written_from = timezone.now()  # candles changed by this cycle have updated_at >= this
    coin_ids = services.coins_upsert(
        coins=[services.CoinIn(r.id, r.symbol, r.name) for r in records], seen_at=now
    )
    last = selectors.snapshot_prices(coin_ids=list(coin_ids.values()))
    # A tick whose price differs from the coin's last accepted price by more than this factor (either
    # way) is an implausible jump: rejected, counted, and the minute treated as polled without a value.
    max_jump = settings.PIPELINE_MAX_TICK_JUMP
    ticks: list[services.TickIn] = []
    snapshots: list[services.SnapshotIn] = []
    repriced: list[str] = []  # upstream ids whose price changed: the stream's price events
    jumps = 0
    stale = 0
    for r in records:
        cid = coin_ids[r.id]
        ref_price, ref_time = last.get(cid, (None, None))
        if ref_time is not None and r.last_updated <= ref_time:
            stale += 1  # nothing new (or older than what we have): the minute is polled, no value
            continue
        if ref_price and not (1 / max_jump <= r.current_price / ref_price <= max_jump):
            jumps += 1
            logger.warning(
                "refresh_markets: %s jumped %.6g -> %.6g: tick rejected", r.id, ref_price, r.current_price
            )
            continue
        ticks.append(services.TickIn(cid, r.last_updated, r.current_price, r.market_cap, r.total_volume))
        if r.current_price != ref_price:
            repriced.append(r.id)
        snapshots.append(
            services.SnapshotIn(
                cid,
                r.current_price,
                r.market_cap,
                r.market_cap_rank,
                r.total_volume,
                r.high_24h,
                r.low_24h,
                r.price_change_percentage_24h,
                r.last_updated,
                now,
            )
        )
    summary.rejects += jumps
    if jumps:
        transaction.on_commit(lambda: telemetry.count("ticks_rejected_jump", jumps))
    tick_result = services.ticks_record(ticks=ticks, fetched_at=now)
    services.snapshots_upsert(rows=snapshots)
    minute = _minute(now)
    since = min(_minute(tick_result.earliest), minute) if tick_result.earliest else minute
    since = max(since, minute - timedelta(days=1))
    polled_ids = list(coin_ids.values())
    built = services.candles_build_1m(
        since=since,
        until=minute + timedelta(minutes=1),
        coin_ids=polled_ids,
        polled=[(c, minute) for c in polled_ids],
        now=now,
    )
    closed = services.candles_close(now=now)
    rolled: dict[str, services.UpsertResult] = {}
    if built.spans:
        lo, hi = built.spans["1m"]
        rolled = services.candles_rollup(
            since=lo, until=hi + timedelta(minutes=1), coin_ids=built.changed_coin_ids, now=now
        )
    # Push, once the cycle has committed: price and candle events for GET /v1/stream (marketdata.events).
    transaction.on_commit(
        functools.partial(
            events.market_events_publish, price_ids=repriced, coin_ids=polled_ids, since=written_from, now=now
        )
    )
    summary.rows_written += tick_result.inserted + len(snapshots) + built.written
    summary.rows_written += sum(r.written for r in rolled.values())
    return {
        "ticks_new": tick_result.inserted,
        "ticks_seen_before": tick_result.duplicates + stale,
        "jumps_rejected": jumps,
        "candles_1m": built.as_dict(),
        "closed": closed,
        "rollups": {tf: r.written for tf, r in rolled.items()},
    }


# --- universe ----------------------------------------------------------------------------------------
def sync_universe(client, *, now: datetime | None = None) -> Summary:
    """New coins added (inactive ones reactivated), coins no longer listed marked inactive."""
    now = now or timezone.now()
    summary = Summary(calls=1)
    result = client.coins_list()
    summary.rejects = len(result.rejects)
    if not result.records:
        # an empty list is an upstream problem, not "everything delisted": change nothing
        summary.details["error"] = "empty coins list: nothing changed"
        return summary
    with transaction.atomic():
        before = selectors.coins_count()
        ids = services.coins_upsert(
            coins=[services.CoinIn(r.id, r.symbol, r.name) for r in result.records], seen_at=now
        )
        added = selectors.coins_count() - before
        deactivated = services.coins_mark_inactive(keep_upstream_ids=ids.keys())
    summary.rows_written = len(ids) + deactivated
    summary.details.update(listed=len(ids), added=added, deactivated=deactivated)
    return summary


# --- backfill ----------------------------------------------------------------------------------------
#: timeframe → (/ohlc/range interval, largest range per call in days)
BACKFILL_INTERVALS = {"1h": ("hourly", 31), "1d": ("daily", 180)}


def backfill(
    client,
    *,
    coins: Iterable[str],
    timeframe: str,
    days: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    now: datetime | None = None,
    progress: bool = False,
) -> Summary:
    """Fetch candle history of ``coins`` (upstream ids) at ``timeframe`` (1h or 1d).

    The range is [start, end) or the last ``days`` days. Without an explicit ``start`` a series
    resumes from its watermark (everything before it was fetched already); with one (a quality
    re-fetch) the range is fetched again. OHLC timestamps are candle CLOSE times: the bucket start
    is close - size. 24h volume and market cap at each close come from /market_chart/range. 1h
    history is rolled up into 1d. Written through the candle write path: re-running is harmless.
    """
    now = now or timezone.now()
    if timeframe not in BACKFILL_INTERVALS:
        if start is None:
            raise ValueError(
                f"backfill supports {', '.join(BACKFILL_INTERVALS)}: CoinGecko has no finer history "
                "(1m/5m/15m candles are built live from ticks)"
            )
        return _rebuild_from_ticks(coins=coins, start=start, end=min(end or now, now), now=now)
    interval, max_days = BACKFILL_INTERVALS[timeframe]
    size = TIMEFRAME_DELTA[timeframe]
    explicit = start is not None
    end = min(end or now, now)
    start = start or end - timedelta(days=days or 30)
    summary = Summary()
    coins = list(coins)
    known = selectors.coin_refs(coins)
    unknown = [c for c in coins if c not in known]
    if unknown:
        summary.details["unknown_coins"] = unknown
    failed: list[str] = []
    written = services.UpsertResult()
    for upstream_id in tqdm(coins, desc=f"backfill {timeframe}", unit="coin", disable=not progress):
        coin_id = known.get(upstream_id)
        if coin_id is None:
            continue
        mark = selectors.watermark_until(coin_id=coin_id, timeframe=timeframe, source="ohlc")
        lo = start if explicit or mark is None else max(start, mark)
        while lo < end:
            hi = min(lo + timedelta(days=max_days), end)
            try:
                result = _backfill_chunk(
                    client, coin_id, upstream_id, timeframe, interval, size, lo, hi, now, summary
                )
            except CoinGeckoError as exc:
                logger.warning("backfill %s %s [%s, %s) failed: %s", upstream_id, timeframe, lo, hi, exc)
                failed.append(upstream_id)
                break
            written.merge(result)
            lo = hi
    summary.rows_written = written.written
    summary.rejects += written.rejected
    summary.details.update(candles=written.as_dict(), failed=failed)
    return summary


def _rebuild_from_ticks(*, coins: Iterable[str], start: datetime, end: datetime, now: datetime) -> Summary:
    """A re-fetch of a 1m/5m/15m range: upstream has no such history, so rebuild the range from the
    ticks we recorded (within ``TICK_RETENTION_HOURS``) and roll it up. No upstream call."""
    summary = Summary()
    ids = list(selectors.coin_refs(list(coins)).values())
    since = start.replace(second=0, microsecond=0)
    built = services.candles_build_1m(since=since, until=end, coin_ids=ids, now=now)
    services.candles_close(now=now)
    rolled = services.candles_rollup(since=since, until=end, coin_ids=ids, now=now)
    summary.rows_written = built.written + sum(r.written for r in rolled.values())
    summary.details.update(rebuilt_from_ticks=True, candles_1m=built.as_dict())
    return summary


@transaction.atomic
def _backfill_chunk(client, coin_id, upstream_id, timeframe, interval, size, lo, hi, now, summary):
    summary.calls += 2
    ohlc = client.ohlc_range(upstream_id, lo, hi, interval=interval)
    chart = client.market_chart_range(upstream_id, lo - size, hi)
    summary.rejects += len(ohlc.rejects) + len(chart.rejects)
    points = sorted(chart.records, key=lambda p: p.time)
    times = [p.time for p in points]
    rows = []
    last_closed = None
    for rec in ohlc.records:
        close_time = rec.close_time
        bucket = ohlc_bucket_start(close_time, size)
        if bucket < lo - size or bucket >= hi:
            continue
        i = bisect.bisect_right(times, close_time) - 1  # the last point at or before the close
        point = points[i] if i >= 0 and close_time - times[i] <= size else None
        closed = close_time <= now
        rows.append(
            services.CandleRow(
                coin_id,
                timeframe,
                bucket,
                rec.open,
                rec.high,
                rec.low,
                rec.close,
                None,  # CoinGecko has no traded volume per candle
                point.total_volume if point else None,
                point.market_cap if point else None,
                closed,
            )
        )
        if closed:
            last_closed = max(last_closed or close_time, close_time)
    result = services.candles_upsert(rows=rows, source="ohlc", now=now)
    if timeframe == "1h" and result.spans:
        services.candles_rollup_result(result, now=now)
    # resume point: the end of the last closed candle fetched; a chunk without any candle that lies
    # wholly in the past has nothing upstream (e.g. before listing) and is passed; a chunk holding
    # only the open candle keeps the watermark where it is.
    if last_closed is not None:
        until = min(last_closed, hi)
    elif not ohlc.records and hi <= now - size:
        until = hi
    else:
        return result
    services.series_watermark_advance(coin_id=coin_id, timeframe=timeframe, source="ohlc", until=until)
    return result
