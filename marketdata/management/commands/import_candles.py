"""manage.py import_candles --coin ID --timeframe TF FILE.csv

Loads candles from a CSV file with the header ``time,open,high,low,close,volume`` (``volume`` may be
empty or absent; ``time`` is the bucket start, ISO 8601 or unix seconds, UTC when no offset is given)
through the one candle write path. Each row is validated; a bad row is reported with its line number
and skipped, the rest land. Idempotent: importing the same file twice changes nothing. The higher
timeframes are rolled up from the imported range afterwards (1m → 5m → … → 1d).
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, overload

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from marketdata import services
from marketdata.models import BUCKET_ORIGIN, TIMEFRAME_DELTA, TIMEFRAMES, Coin, rollup_targets

REQUIRED = ("time", "open", "high", "low", "close")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RowError(ValueError):
    pass


def parse_time(value: str) -> datetime:
    value = value.strip()
    if not value:
        raise RowError("time is empty")
    try:
        seconds = float(value)
    except ValueError:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise RowError(f"time {value!r} is neither ISO 8601 nor unix seconds") from None
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    if not math.isfinite(seconds) or not (0 <= seconds < 32_503_680_000):  # year 3000
        raise RowError(f"time {value!r} is out of range (unix seconds expected)")
    return EPOCH + timedelta(seconds=seconds)


@overload
def parse_number(name: str, value: str | None, *, optional: Literal[False] = ...) -> float: ...
@overload
def parse_number(name: str, value: str | None, *, optional: bool) -> float | None: ...
def parse_number(name: str, value: str | None, *, optional: bool = False) -> float | None:
    if value is None or value.strip() == "":
        if optional:
            return None
        raise RowError(f"{name} is empty")
    try:
        number = float(value)
    except ValueError:
        raise RowError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise RowError(f"{name} {value!r} is not finite")
    if number < 0:
        raise RowError(f"{name} {value!r} is negative")
    return number


Parsed = tuple[datetime, float, float, float, float, float | None]


def parse_row(row: dict[str, str], timeframe: str) -> Parsed:
    t = parse_time(row.get("time") or "")
    if (t - BUCKET_ORIGIN) % TIMEFRAME_DELTA[timeframe]:
        raise RowError(f"time {t.isoformat()} is not the start of a {timeframe} bucket")
    o, h, lo, c = (parse_number(k, row.get(k)) for k in ("open", "high", "low", "close"))
    v = parse_number("volume", row.get("volume"), optional=True)
    if lo > min(o, c) or h < max(o, c):
        raise RowError(f"low {lo} / high {h} do not bound open {o} and close {c}")
    return t, o, h, lo, c, v


class Command(BaseCommand):
    help = "Import candles of one coin and timeframe from a CSV file (time,open,high,low,close,volume)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--coin", required=True, help="coin: upstream id (e.g. bitcoin) or numeric id")
        parser.add_argument("--timeframe", required=True, choices=TIMEFRAMES)
        parser.add_argument("--batch", type=int, default=50_000, help="rows per write (default 50000)")
        parser.add_argument("--source", default="import")
        parser.add_argument("--no-rollup", action="store_true", help="do not roll up higher timeframes")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        coin = Coin.objects.filter(upstream_id=opts["coin"]).first()
        if coin is None and opts["coin"].isdigit():
            coin = Coin.objects.filter(pk=int(opts["coin"])).first()
        if coin is None:
            raise CommandError(f"unknown coin {opts['coin']!r} (sync the coin universe first)")
        path: Path = opts["file"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        tf = opts["timeframe"]
        total = services.UpsertResult()
        bad = 0
        read = 0
        span: list[datetime] = []
        batch: list[services.CandleRow] = []

        def flush() -> None:
            if batch:
                total.merge(services.candles_upsert(rows=batch, source=opts["source"]))
                span.extend((min(r.bucket_start for r in batch), max(r.bucket_start for r in batch)))
                batch.clear()

        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise CommandError(f"{path}: header lacks column(s) {', '.join(missing)} (got {header})")
            reader.fieldnames = header
            progress = tqdm(
                total=path.stat().st_size,
                unit="B",
                unit_scale=True,
                desc="import",
                disable=opts["no_progress"],
            )
            last_pos = 0
            for row in reader:
                read += 1
                line = reader.line_num
                try:
                    if None in row:
                        raise RowError("more fields than the header")
                    t, o, h, lo, c, v = parse_row(row, tf)
                except RowError as exc:
                    bad += 1
                    self.stderr.write(f"line {line}: {exc} - skipped")
                    continue
                batch.append(services.CandleRow(coin.pk, tf, t, o, h, lo, c, v))
                if len(batch) >= opts["batch"]:
                    flush()
                    pos = fh.tell()
                    progress.update(pos - last_pos)
                    last_pos = pos
            flush()
            progress.update(path.stat().st_size - last_pos)
            progress.close()

        rolled = {}
        if span and not opts["no_rollup"] and rollup_targets(tf):
            rolled = services.candles_rollup(
                since=min(span), until=max(span) + TIMEFRAME_DELTA[tf], coin_ids=[coin.pk], base=tf
            )
        self.stdout.write(
            f"{coin.upstream_id} {tf}: {read} rows read, {total.inserted} inserted, "
            f"{total.updated} updated, {total.unchanged} unchanged, {bad + total.rejected} rejected, "
            f"{total.duplicates} duplicate times"
        )
        for rtf, r in rolled.items():
            self.stdout.write(
                f"  rolled up {rtf}: {r.inserted} inserted, {r.updated} updated, {r.unchanged} unchanged"
            )
