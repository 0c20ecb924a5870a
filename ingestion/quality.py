"""Data-quality checks on the stored candles. Each finding becomes a `QualityFlag` (one open flag per
coin, timeframe, kind and range start, so re-running a check is idempotent) and schedules a re-fetch
of exactly the affected range (`ingestion.refetch_range` → the pipeline's backfill for that range).

- missing: closed buckets with no row (a minute we failed to poll, a lost batch). A ``filled``
  candle is not missing: it was polled and carried forward on purpose.
- jump: a bucket whose open/high/low/close lies implausibly far from its neighbours, measured
  against the series' own recent volatility: robust z-score |log(x / ref)| / sigma, where ref is the
  median log-close of the two buckets on each side and sigma = 1.4826 * MAD of the window's log
  returns. Flagged when the deviation is above both ``z`` * sigma and an absolute floor.
- stale: an active coin whose upstream values (snapshot ``last_updated``) are older than N minutes.

Open flags are re-evaluated by every check: a missing range that is now complete, a jump that is
gone after the re-fetch, or a stale coin that is fresh again is resolved automatically; anything
else stays visible until an operator resolves it in the admin.

The candles and snapshots are read through :mod:`marketdata.selectors` (the gap and jump searches
run in SQL there); this module decides what is a finding and what to do about it.

Settings (``apiplatform/settings.py``, read at call time): INGESTION_QUALITY_MISSING_LOOKBACK /
_JUMP_LOOKBACK ("timeframe=minutes,…"), INGESTION_QUALITY_GRACE_MINUTES, INGESTION_QUALITY_JUMP_Z,
INGESTION_QUALITY_JUMP_MIN, INGESTION_QUALITY_STALE_MINUTES, INGESTION_REFETCH_RETRY_MINUTES,
INGESTION_REFETCH_MAX, INGESTION_REFETCH_PER_RUN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ingestion.models import QualityFlag
from ingestion.services import quality_flag_raise, quality_flag_resolve, quality_flag_schedule_refetch
from marketdata import selectors
from marketdata.models import TIMEFRAME_DELTA, timeframe_numbers
from marketdata.services import bucket_floor

logger = logging.getLogger(__name__)


def _minutes(name: str, value: str) -> dict[str, timedelta]:
    """A "timeframe=minutes,…" setting (e.g. ``"1m=180,1h=10080"``) as timeframe → window, in order."""
    return {tf: timedelta(minutes=n) for tf, n in timeframe_numbers(name, value).items()}


def missing_lookback() -> dict[str, timedelta]:
    """Per timeframe, how far back the missing-bucket check looks."""
    return _minutes("INGESTION_QUALITY_MISSING_LOOKBACK", settings.INGESTION_QUALITY_MISSING_LOOKBACK)


def jump_lookback() -> dict[str, timedelta]:
    """Per timeframe, the window of the jump check (also its volatility estimate)."""
    return _minutes("INGESTION_QUALITY_JUMP_LOOKBACK", settings.INGESTION_QUALITY_JUMP_LOOKBACK)


def grace() -> timedelta:
    """How long after its end a bucket may still be written before it counts as missing."""
    return timedelta(minutes=settings.INGESTION_QUALITY_GRACE_MINUTES)


def stale_after() -> timedelta:
    """How long an active coin may go without an upstream update before it is stale."""
    return timedelta(minutes=settings.INGESTION_QUALITY_STALE_MINUTES)


JUMP_MIN_POINTS = 30  # fewer buckets than this in the window: no volatility estimate, no jump check
SCALE_FLOOR = 1e-4  # sigma floor: a perfectly flat (filled) series must not flag a 0.01% move


@dataclass(frozen=True)
class Finding:
    coin_id: int
    timeframe: str
    kind: str
    range_start: datetime
    range_end: datetime
    details: dict = field(default_factory=dict, compare=False)


@dataclass
class CheckResult:
    found: int = 0
    new: int = 0
    resolved: int = 0
    refetches: int = 0
    refetches_deferred: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "found": self.found,
            "new": self.new,
            "resolved": self.resolved,
            "refetches": self.refetches,
            "refetches_deferred": self.refetches_deferred,
            "by_kind": self.by_kind,
        }


# --- missing buckets -----------------------------------------------------------------------------------
def find_missing(*, now: datetime, coin_ids: list[int], timeframe: str, lookback: timedelta) -> list[Finding]:
    """Gaps among closed buckets of [now - lookback, now - grace): between stored buckets, after the
    last one, and before the first one when an older bucket exists (a series' true start is no gap)."""
    if not coin_ids:
        return []
    step = TIMEFRAME_DELTA[timeframe]
    w_end = bucket_floor(timeframe, now - grace())
    w_start = bucket_floor(timeframe, now - lookback)
    rows = selectors.candle_gaps(
        coin_ids=coin_ids, timeframe=timeframe, start=w_start, end=w_end, anchor_from=w_start - lookback
    )
    return [
        Finding(
            coin_id,
            timeframe,
            QualityFlag.Kind.MISSING,
            start,
            end,
            {"buckets": int((end - start) / step)},
        )
        for coin_id, start, end in rows
    ]


def check_range(
    *,
    coin_id: int,
    timeframe: str,
    start: datetime,
    end: datetime,
    now: datetime,
    expected_start: datetime | None = None,
) -> int:
    """Missing buckets of one series in [start, end), found right after the history job wrote that
    range (the periodic check looks back only ``missing_lookback()``; history goes back years). Each
    gap is flagged and its re-fetch scheduled like the periodic check's. Buckets before the range's
    first stored one are no gap (the series' start, or covered by the check of the older range,
    which overlaps this one by a bucket) unless ``expected_start`` says where the series must begin
    (the oldest range of a fill that ended at its target, not at the coin's first data). Returns
    the number of gaps found."""
    if end <= start:
        return 0
    step = TIMEFRAME_DELTA[timeframe]
    rows = selectors.candle_gaps(
        coin_ids=[coin_id], timeframe=timeframe, start=start, end=end, anchor_from=start
    )
    if expected_start is not None:
        first = selectors.candles_range(
            coin_id=coin_id, timeframe=timeframe, start=expected_start, end=end, limit=1,
            newest_first=False, fields=("bucket_start",),
        )  # fmt: skip
        head = first[0][0] if first else end
        if head > expected_start:
            rows = [(coin_id, expected_start, head), *[r for r in rows if r[1] >= head]]
    for _, gap_start, gap_end in rows:
        flag, _ = quality_flag_raise(
            coin_id=coin_id,
            timeframe=timeframe,
            kind=QualityFlag.Kind.MISSING,
            range_start=gap_start,
            range_end=gap_end,
            details={"buckets": int((gap_end - gap_start) / step), "found_by": "history"},
            now=now,
        )
        if _refetch_due(flag, now):
            quality_flag_schedule_refetch(flag_id=flag.pk, now=now)
    if rows:
        logger.info("history gaps: coin %s %s: %d missing range(s) flagged", coin_id, timeframe, len(rows))
    return len(rows)


def range_is_complete(*, coin_id: int, timeframe: str, start: datetime, end: datetime) -> bool:
    step = TIMEFRAME_DELTA[timeframe]
    expected = int((end - start) / step)
    return selectors.candles_count(coin_id=coin_id, timeframe=timeframe, start=start, end=end) >= expected


# --- implausible jumps ---------------------------------------------------------------------------------
def find_jumps(*, now: datetime, coin_ids: list[int], timeframe: str, lookback: timedelta) -> list[Finding]:
    """Implausible jumps in [now - lookback, now]; adjacent flagged buckets are one range."""
    if not coin_ids:
        return []
    rows = selectors.candle_jumps(
        coin_ids=coin_ids,
        timeframe=timeframe,
        start=bucket_floor(timeframe, now - lookback),
        end=now,
        z=float(settings.INGESTION_QUALITY_JUMP_Z),
        min_jump=float(settings.INGESTION_QUALITY_JUMP_MIN),
        min_points=JUMP_MIN_POINTS,
        sigma_floor=SCALE_FLOOR,
    )
    step = TIMEFRAME_DELTA[timeframe]
    findings: list[Finding] = []
    run: list[tuple] = []
    for row in rows:
        if run and (row[0] != run[-1][0] or row[1] != run[-1][1] + step):
            findings.append(_jump_finding(run, timeframe))
            run = []
        run.append(row)
    if run:
        findings.append(_jump_finding(run, timeframe))
    return findings


def _jump_finding(run: list[tuple], timeframe: str) -> Finding:
    worst = max(r[2] for r in run)
    sigma = run[0][3]
    return Finding(
        run[0][0],
        timeframe,
        QualityFlag.Kind.JUMP,
        run[0][1],
        run[-1][1] + TIMEFRAME_DELTA[timeframe],
        {"log_deviation": round(worst, 6), "sigma": round(sigma, 8), "z": round(worst / sigma, 1)},
    )


# --- stale coins ---------------------------------------------------------------------------------------
def find_stale(*, now: datetime, coin_ids: list[int]) -> list[Finding]:
    """Active coins with no upstream update for ``stale_after()``: range from the first minute
    without fresh data to now (the minutes a re-fetch should fill)."""
    if not coin_ids:
        return []
    cutoff = now - stale_after()
    stale = selectors.coins_stale(coin_ids=coin_ids, cutoff=cutoff)
    step = TIMEFRAME_DELTA["1m"]
    end = bucket_floor("1m", now)
    findings = []
    for coin_id, last_updated, first_seen in stale:
        last = last_updated or first_seen
        start = bucket_floor("1m", last) + step
        if start >= end:
            continue
        findings.append(
            Finding(
                coin_id,
                "1m",
                QualityFlag.Kind.STALE,
                start,
                end,
                {"last_updated": last_updated.isoformat() if last_updated else None},
            )
        )
    return findings


def _is_fresh(coin_id: int, now: datetime) -> bool:
    return selectors.coin_is_fresh(coin_id=coin_id, since=now - stale_after())


# --- the periodic check --------------------------------------------------------------------------------
def run_checks(
    *, now: datetime | None = None, coin_ids: list[int] | None = None, schedule_refetch: bool = True
) -> CheckResult:
    """Run every check, record flags, resolve what is fixed, schedule re-fetches. Idempotent."""
    now = now or timezone.now()
    coins = selectors.coin_ids_active(coin_ids=coin_ids)
    findings: list[Finding] = []
    for tf, lookback in missing_lookback().items():
        findings += find_missing(now=now, coin_ids=coins, timeframe=tf, lookback=lookback)
    for tf, lookback in jump_lookback().items():
        findings += find_jumps(now=now, coin_ids=coins, timeframe=tf, lookback=lookback)
    findings += find_stale(now=now, coin_ids=coins)

    result = CheckResult(found=len(findings))
    seen: set[int] = set()
    for f in findings:
        kind = str(f.kind)
        result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
        flag, created = quality_flag_raise(
            coin_id=f.coin_id,
            timeframe=f.timeframe,
            kind=f.kind,
            range_start=f.range_start,
            range_end=f.range_end,
            details=f.details,
            now=now,
        )
        seen.add(flag.pk)
        result.new += int(created)
        if schedule_refetch and _refetch_due(flag, now):
            # Upstream calls are the scarce resource: after an outage every coin has a gap, and
            # re-fetching them all at once would starve the live refresh of its budget. The rest
            # stay open, unscheduled, and are taken by the next runs.
            if result.refetches < refetches_per_run():
                quality_flag_schedule_refetch(flag_id=flag.pk, now=now)
                result.refetches += 1
            else:
                result.refetches_deferred += 1
    result.resolved = _resolve_fixed(now=now, coins=coins, still_found=seen)
    logger.info("quality check: %s", result.as_dict())
    return result


def refetches_per_run() -> int:
    """At most this many re-fetches are scheduled by one check (``INGESTION_REFETCH_PER_RUN``)."""
    return settings.INGESTION_REFETCH_PER_RUN


def _refetch_due(flag: QualityFlag, now: datetime) -> bool:
    if flag.refetch_scheduled_at is None:
        return True
    if flag.refetch_count >= settings.INGESTION_REFETCH_MAX:
        return False
    retry_after = timedelta(minutes=settings.INGESTION_REFETCH_RETRY_MINUTES)
    return now - flag.refetch_scheduled_at >= retry_after


def _resolve_fixed(*, now: datetime, coins: list[int], still_found: set[int]) -> int:
    """Open flags of the checked coins that no check found this time, and whose range is fixed."""
    resolved = 0
    open_flags = QualityFlag.objects.filter(resolved_at__isnull=True, coin_id__in=coins).exclude(
        pk__in=still_found
    )
    jump_windows = jump_lookback()
    for flag in open_flags:
        if flag.kind == QualityFlag.Kind.MISSING:
            fixed = range_is_complete(
                coin_id=flag.coin_id, timeframe=flag.timeframe, start=flag.range_start, end=flag.range_end
            )
            reason = "range complete"
        elif flag.kind == QualityFlag.Kind.STALE:
            fixed = _is_fresh(flag.coin_id, now)
            reason = "fresh data again"
        else:
            # not found again, and still inside the window that was checked: the values changed
            window = jump_windows.get(flag.timeframe)
            fixed = window is not None and flag.range_start >= now - window
            reason = "no longer implausible"
        if fixed:
            quality_flag_resolve(flag_id=flag.pk, resolution=f"auto: {reason}", now=now)
            resolved += 1
    return resolved
