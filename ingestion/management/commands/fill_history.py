"""manage.py fill_history [--top 100] [--coins a,b] [--seconds 600] [--enqueue] [--estimate]"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from ingestion import history


class Command(BaseCommand):
    help = (
        "Fill candle history (daily since each coin's first data, hourly for the last "
        "INGESTION_HISTORY_HOURLY_DAYS days) newest first, in the upstream budget the live refresh "
        "leaves; resumable. The scheduled job ingestion.fill_history does the same for every active coin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--top", type=int, help="only the top N coins by market cap")
        parser.add_argument("--coins", help="comma-separated upstream ids (default: every active coin)")
        parser.add_argument(
            "--seconds", type=float, default=None, help="stop after this long (default: until done)"
        )
        parser.add_argument(
            "--enqueue", action="store_true", help="run it on a worker (queue backfill) and return at once"
        )
        parser.add_argument(
            "--estimate", action="store_true", help="print what is left and how long it takes; fetch nothing"
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["estimate"]:
            self._estimate()
            return
        seconds = opts["seconds"] if opts["seconds"] is not None else 24 * 3600.0
        coins = [c.strip() for c in opts["coins"].split(",") if c.strip()] if opts["coins"] else None
        if opts["enqueue"]:
            if coins:
                raise CommandError("--enqueue takes --top, not --coins")
            from ingestion.tasks import fill_history

            result = fill_history.apply_async(kwargs={"top": opts["top"], "seconds": seconds})
            self.stdout.write(f"history fill enqueued: task {result.id} (top {opts['top'] or 'all'})")
            return
        bar = tqdm(desc="history ranges", unit="range", disable=opts["no_progress"])

        def on_progress(progress: history.Progress, left: int) -> None:
            bar.update(1)
            bar.set_postfix(calls=progress.calls, candles=progress.candles, series_left=left)

        with history.exclusive(seconds + 300) as held:
            if not held:
                raise CommandError("another history run is working (the history lock is held)")
            with history.history_client() as client:
                summary = history.fill(
                    client, top=opts["top"], coins=coins, seconds=seconds, on_progress=on_progress
                )
        bar.close()
        d = summary.details
        self.stdout.write(
            f"history: {d.get('ranges', 0)} ranges, {summary.calls} calls, "
            f"{summary.rows_written} rows written, "
            f"{d.get('series_completed', 0)} series completed, {d.get('gaps_flagged', 0)} gaps flagged; "
            f"left in plan: {d.get('series_left_in_plan', 0)}; failed: {d.get('failed') or 'none'}"
        )

    def _estimate(self) -> None:
        from marketdata.selectors import coin_ids_active

        limit, window = settings.COINGECKO_RATE_LIMIT_PER_MIN, settings.COINGECKO_RATE_WINDOW
        reserve = history.budget_reserve(limit=limit, window=window, active_coins=len(coin_ids_active()))
        per_minute = (limit - reserve) * 60.0 / window
        total = 0
        for p in history.progress_all():
            calls = 2 * p.remaining_chunks
            total += calls
            self.stdout.write(
                f"{p.timeframe}: {p.complete}/{p.coins} series complete, at most {p.remaining_buckets} "
                f"candles and {calls} calls left"
            )
        self.stdout.write(
            f"budget {limit}/{window:g}s, {reserve} kept for live work: history takes {per_minute:.0f} calls "
            f"a minute; at most {total} calls = {total / per_minute / 60:.1f} h left"
        )
