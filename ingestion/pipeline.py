"""The ingestion pipeline as plain functions (no Celery): the tasks in ``ingestion.tasks`` and the
management commands call these.

- :func:`refresh_markets` — one cycle: /coins/markets for the whole universe (pages of 250 until an
  empty page) → coins, snapshots, ticks → 1m candles → close ended buckets → roll-ups.
- :func:`refresh_prices_fast` — the top coins by market cap through /simple/price (every 20 s),
  through the same write path.
- :func:`refresh_exchange_rates`, :func:`refresh_global` — the quote currencies' rates and the
  whole market (/exchange_rates, /global).
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
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from apiplatform import telemetry
from ingestion.coingecko import CoinGeckoError, ohlc_bucket_start
from marketdata import events, selectors, services
from marketdata.alerts import hooks as alert_hooks
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
#: The price change windows asked of /coins/markets (1h, 7d and 30d land in the snapshot details).
CHANGE_WINDOWS = "1h,24h,7d,30d"
#: pg_advisory_xact_lock key serialising write cycles (the minute walk and the fast path may run at
#: once in different workers; one at a time keeps their row locks from deadlocking).
WRITE_CYCLE_LOCK = 0x63616E646C6573  # "candles"


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
            result = client.coins_markets_page(
                page, per_page=per_page, price_change_percentage=CHANGE_WINDOWS
            )
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


def refresh_prices_fast(client, *, now: datetime | None = None, coins: int | None = None) -> Summary:
    """The fast path: the top ``coins`` coins by market cap (``INGESTION_FAST_COINS``) through
    /simple/price (one call for 250 ids), written through the same write path as the minute walk:
    ticks, snapshot prices (the details stay from the last walk), 1m candles, roll-ups."""
    started = time.monotonic()
    now = now or timezone.now()
    summary = Summary()
    limit = settings.INGESTION_FAST_COINS if coins is None else coins
    top = selectors.top_coins(limit=limit) if limit > 0 else {}
    summary.details["coins_asked"] = len(top)
    if not top:
        summary.details["skipped"] = "no snapshots yet: the minute walk finds the top coins first"
        return summary
    result = client.simple_price(list(top))
    summary.calls += result.calls
    summary.rejects += len(result.rejects)
    observations = []
    for p in result.records:
        cid = top.get(p.id)
        if cid is None or p.last_updated_at is None:
            summary.rejects += 1  # an id we did not ask for, or no upstream time to key the tick by
            continue
        snapshot = services.SnapshotIn(
            cid, p.price, p.market_cap, None, p.volume_24h, None, None, p.change_24h, p.last_updated_at, now
        )
        observations.append(
            _Observation(cid, p.id, p.last_updated_at, p.price, p.market_cap, p.volume_24h, snapshot)
        )
    summary.details["coins_polled"] = len(observations)
    if observations:
        with transaction.atomic():
            _lock_write_cycle()
            summary.details.update(_write_observations(observations, now=now, summary=summary, part="price"))
    summary.details["duration_s"] = round(time.monotonic() - started, 3)
    logger.info("refresh_prices_fast: %s", summary.as_dict())
    return summary


@dataclass(frozen=True, slots=True)
class _Observation:
    """One coin's values from /coins/markets or /simple/price, ready for the write path."""

    coin_id: int
    upstream_id: str
    last_updated: datetime
    price: float
    market_cap: float | None
    volume_24h: float | None
    snapshot: services.SnapshotIn


def _lock_write_cycle() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_CYCLE_LOCK])


def _snapshot_of(cid: int, r, now: datetime) -> services.SnapshotIn:
    return services.SnapshotIn(
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
        r.price_change_percentage_1h,
        r.price_change_percentage_7d,
        r.price_change_percentage_30d,
        r.circulating_supply,
        r.total_supply,
        r.max_supply,
        r.fully_diluted_valuation,
        r.ath,
        r.ath_date,
        r.atl,
        r.atl_date,
        r.image,
    )


@transaction.atomic
def _write_cycle(records, *, now: datetime, summary: Summary) -> dict[str, Any]:
    _lock_write_cycle()
    coin_ids = services.coins_upsert(
        coins=[services.CoinIn(r.id, r.symbol, r.name) for r in records], seen_at=now
    )
    observations = []
    for r in records:
        cid = coin_ids[r.id]
        observations.append(
            _Observation(
                cid,
                r.id,
                r.last_updated,
                r.current_price,
                r.market_cap,
                r.total_volume,
                _snapshot_of(cid, r, now),
            )
        )
    return _write_observations(observations, now=now, summary=summary, part="all")


def _write_observations(
    observations: list[_Observation], *, now: datetime, summary: Summary, part: str
) -> dict[str, Any]:
    """Ticks, snapshots (``part`` of them: "all" for /coins/markets, "price" for /simple/price),
    1m candles of the polled minute, closes and roll-ups — inside the caller's transaction."""
    written_from = timezone.now()  # candles changed by this cycle have updated_at >= this
    polled_ids = [o.coin_id for o in observations]
    last = selectors.snapshot_prices(coin_ids=polled_ids)
    # A tick whose price differs from the coin's last accepted price by more than this factor (either
    # way) is an implausible jump: rejected, counted, and the minute treated as polled without a value.
    max_jump = settings.PIPELINE_MAX_TICK_JUMP
    ticks: list[services.TickIn] = []
    snapshots: list[services.SnapshotIn] = []
    details: list[services.SnapshotIn] = []
    repriced: list[str] = []  # upstream ids whose price changed: the stream's price events
    jumps = 0
    stale = 0
    for o in observations:
        ref_price, ref_time = last.get(o.coin_id, (None, None))
        # /simple/price gives whole seconds: the same upstream update seen again through /coins/markets
        # (milliseconds) is the same second with the same price, not a new tick
        same = (
            ref_time is not None
            and o.last_updated.replace(microsecond=0) == ref_time
            and o.price == ref_price
        )
        if ref_time is not None and (o.last_updated <= ref_time or same):
            stale += 1  # nothing new (or older than what we have): the minute is polled, no value
            if part == "all":
                details.append(o.snapshot)  # the price is not new, the details may be
            continue
        if ref_price and not (1 / max_jump <= o.price / ref_price <= max_jump):
            jumps += 1
            logger.warning(
                "refresh: coin %s jumped %.6g -> %.6g: tick rejected", o.coin_id, ref_price, o.price
            )
            continue
        ticks.append(services.TickIn(o.coin_id, o.last_updated, o.price, o.market_cap, o.volume_24h))
        snapshots.append(o.snapshot)
        if o.price != ref_price:
            repriced.append(o.upstream_id)
    summary.rejects += jumps
    if jumps:
        transaction.on_commit(lambda: telemetry.count("ticks_rejected_jump", jumps))
    tick_result = services.ticks_record(ticks=ticks, fetched_at=now)
    services.snapshots_upsert(rows=snapshots, part=part)
    if details:
        services.snapshots_upsert(rows=details, part="details")
    minute = _minute(now)
    since = min(_minute(tick_result.earliest), minute) if tick_result.earliest else minute
    since = max(since, minute - timedelta(days=1))
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
    alert_hooks.candles_written(now=now)  # customers' alerts are evaluated once this commits
    # Push, once the cycle has committed: price and candle events for GET /v1/stream (marketdata.events).
    transaction.on_commit(
        functools.partial(
            events.market_events_publish, price_ids=repriced, coin_ids=polled_ids, since=written_from, now=now
        )
    )
    summary.rows_written += tick_result.inserted + len(snapshots) + len(details) + built.written
    summary.rows_written += sum(r.written for r in rolled.values())
    return {
        "ticks_new": tick_result.inserted,
        "ticks_seen_before": tick_result.duplicates + stale,
        "jumps_rejected": jumps,
        "details_only": len(details),
        "candles_1m": built.as_dict(),
        "closed": closed,
        "rollups": {tf: r.written for tf, r in rolled.items()},
    }


# --- reference data: exchange rates, the global market ------------------------------------------------
def refresh_exchange_rates(client, *, now: datetime | None = None) -> Summary:
    """/exchange_rates → the stored rate of every currency (per BTC and per USD)."""
    now = now or timezone.now()
    result = client.exchange_rates()
    summary = Summary(calls=1, rejects=len(result.rejects))
    rates = [services.RateIn(r.code, r.name, r.unit, r.type, r.value) for r in result.records]
    summary.rows_written = services.exchange_rates_replace(rates=rates, fetched_at=now)
    summary.details["currencies"] = summary.rows_written
    return summary


def refresh_global(client, *, now: datetime | None = None) -> Summary:
    """/global → one stored global snapshot (keyed by the upstream's updated_at)."""
    now = now or timezone.now()
    g = client.global_market()
    row = services.GlobalIn(
        g.updated_at,
        g.total_market_cap,
        g.total_volume,
        g.btc_dominance,
        g.eth_dominance,
        g.active_coins,
        g.markets,
        g.market_cap_change_24h_pct,
    )
    added = services.global_snapshot_record(row=row, fetched_at=now)
    return Summary(calls=1, rows_written=int(added), details={"time": g.updated_at.isoformat(), "new": added})


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
#: The source of candles and watermarks fetched from upstream history (/ohlc/range).
HISTORY_SOURCE = "history"


def backfill_chunk_size(timeframe: str) -> timedelta:
    """The largest range one /ohlc/range call may ask for at ``timeframe``."""
    return timedelta(days=BACKFILL_INTERVALS[timeframe][1])


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

    The range is [start, end) or the last ``days`` days. Without an explicit ``start`` the part the
    series' history watermark already covers is skipped (resumable: an interrupted run fetches
    nothing twice); with one (a quality re-fetch) the range is fetched again. Each call goes
    through :func:`backfill_range`, the one fetch-and-write step the history job
    (:mod:`ingestion.history`) uses too.
    """
    now = now or timezone.now()
    if timeframe not in BACKFILL_INTERVALS:
        if start is None:
            raise ValueError(
                f"backfill supports {', '.join(BACKFILL_INTERVALS)}: CoinGecko has no finer history "
                "(1m/5m/15m candles are built live from ticks)"
            )
        return _rebuild_from_ticks(coins=coins, start=start, end=min(end or now, now), now=now)
    chunk = backfill_chunk_size(timeframe)
    explicit = start is not None
    end = min(end or now, now)
    start = start or end - timedelta(days=days or 30)
    summary = Summary()
    coins = list(coins)
    known = selectors.coin_refs(coins)
    unknown = [c for c in coins if c not in known]
    if unknown:
        summary.details["unknown_coins"] = unknown
    marks = {} if explicit else selectors.series_marks(source=HISTORY_SOURCE, coin_ids=list(known.values()))
    failed: list[str] = []
    written = services.UpsertResult()
    for upstream_id in tqdm(coins, desc=f"backfill {timeframe}", unit="coin", disable=not progress):
        coin_id = known.get(upstream_id)
        if coin_id is None:
            continue
        mark = marks.get((coin_id, timeframe))
        try:
            for lo, hi in _missing_chunks(start, end, chunk, mark):
                written.merge(
                    backfill_range(
                        client, coin_id=coin_id, upstream_id=upstream_id, timeframe=timeframe,
                        start=lo, end=hi, now=now, summary=summary,
                    ).result
                )  # fmt: skip
        except CoinGeckoError as exc:
            logger.warning("backfill %s %s failed: %s", upstream_id, timeframe, exc)
            failed.append(upstream_id)
    summary.rows_written = written.written
    summary.rejects += written.rejected
    summary.details.update(candles=written.as_dict(), failed=failed)
    return summary


def _missing_chunks(
    start: datetime, end: datetime, chunk: timedelta, mark
) -> list[tuple[datetime, datetime]]:
    """[start, end) less what the watermark covers, as ranges of at most ``chunk``: the newer part
    oldest first, then the older part newest first — each range touches the covered one, so every
    fetched range extends the watermark."""
    if mark is None or mark.since is None:
        newer, older = [(start, end)], []
    else:
        newer = [(max(start, mark.until), end)] if end > mark.until else []
        older = [(start, min(end, mark.since))] if start < mark.since else []
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in newer:
        while lo < hi:
            out.append((lo, min(lo + chunk, hi)))
            lo = out[-1][1]
    for lo, hi in older:
        while hi > lo:
            out.append((max(hi - chunk, lo), hi))
            hi = out[-1][0]
    return out


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


@dataclass
class RangeFetched:
    """What :func:`backfill_range` did: the write's result, the buckets upstream returned (first one
    and count), and whether upstream has nothing before ``start`` (the series' first data)."""

    result: services.UpsertResult
    candles: int
    first_bucket: datetime | None
    start_reached: bool


@transaction.atomic
def backfill_range(
    client,
    *,
    coin_id: int,
    upstream_id: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    now: datetime,
    summary: Summary,
    floor: datetime | None = None,
) -> RangeFetched:
    """Fetch [start, end) of one series (at most one /ohlc/range call: ``backfill_chunk_size``) and
    write it through the candle write path (source ``history``), in one transaction with its
    watermark.

    OHLC timestamps are candle CLOSE times: the bucket start is close - size; a candle whose close
    is in the future is stored open. ``volume_24h`` and ``market_cap`` at each close come from
    /market_chart/range (one call). 1h history is rolled up into the higher timeframes. The fetched
    range extends the series' history watermark (``marketdata.services.series_watermark_extend``)
    when it touches it; ``start_reached`` when upstream has nothing older: ``start`` is at or before
    ``floor`` (the oldest upstream history), or the range holds no candle although it lies in the
    past (the range before the coin's listing).
    """
    interval, _ = BACKFILL_INTERVALS[timeframe]
    size = TIMEFRAME_DELTA[timeframe]
    lo, hi = start, end
    summary.calls += 2
    ohlc = client.ohlc_range(upstream_id, lo, hi, interval=interval)
    chart = client.market_chart_range(upstream_id, lo - size, hi)
    summary.rejects += len(ohlc.rejects) + len(chart.rejects)
    points = sorted(chart.records, key=lambda p: p.time)
    times = [p.time for p in points]
    rows = []
    first_bucket: datetime | None = None
    for rec in ohlc.records:
        close_time = rec.close_time
        bucket = ohlc_bucket_start(close_time, size)
        if bucket < lo - size or bucket >= hi:
            continue
        i = bisect.bisect_right(times, close_time) - 1  # the last point at or before the close
        point = points[i] if i >= 0 and close_time - times[i] <= size else None
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
                close_time <= now,
            )
        )
        first_bucket = bucket if first_bucket is None else min(first_bucket, bucket)
    result = services.candles_upsert(rows=rows, source=HISTORY_SOURCE, now=now)
    if result.spans:  # 1h → 4h, 1d, 1w; 1d → 1w (marketdata.models.ROLLUP_SOURCE)
        services.candles_rollup_result(result, now=now)
    # a late first candle is no proof (upstream has holes): the next, older range shows it empty
    start_reached = (floor is not None and lo <= floor) or (
        first_bucket is None and not ohlc.rejects and hi <= now - size
    )
    services.series_watermark_extend(
        coin_id=coin_id,
        timeframe=timeframe,
        source=HISTORY_SOURCE,
        since=lo,
        until=min(hi, now),
        start_reached=start_reached,
    )
    return RangeFetched(result, len(rows), first_bucket, start_reached)
