"""manage.py backfill --coins bitcoin,ethereum --timeframe 1h --days 30"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingestion import pipeline


def _time(value: str) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


class Command(BaseCommand):
    help = (
        "Backfill candle history from CoinGecko /ohlc/range (+ /market_chart/range for 24h volume and "
        "market cap). Resumable (per-series watermarks) and idempotent; 1h history is rolled up to 1d."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--coins", required=True, help="comma-separated upstream ids, or 'active'")
        parser.add_argument("--timeframe", required=True, choices=sorted(pipeline.BACKFILL_INTERVALS))
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--start", type=_time, help="ISO 8601; re-fetches from here, ignoring watermarks")
        parser.add_argument("--end", type=_time, help="ISO 8601 (default: now)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        from ingestion.coingecko import CoinGeckoClient
        from marketdata.models import Coin

        if opts["coins"] == "active":
            coins = list(Coin.objects.filter(active=True).values_list("upstream_id", flat=True))
        else:
            coins = [c.strip() for c in opts["coins"].split(",") if c.strip()]
        if not coins:
            raise CommandError("no coins")
        with CoinGeckoClient.from_settings() as client:
            summary = pipeline.backfill(
                client,
                coins=coins,
                timeframe=opts["timeframe"],
                days=opts["days"],
                start=opts["start"],
                end=opts["end"],
                progress=not opts["no_progress"],
            )
        d = summary.details
        c = d.get("candles", {})
        self.stdout.write(
            f"backfill {opts['timeframe']}: {len(coins)} coins, {summary.calls} calls, "
            f"{c.get('inserted', 0)} inserted, {c.get('updated', 0)} updated, "
            f"{c.get('unchanged', 0)} unchanged, "
            f"{summary.rejects} rejects; failed: {d.get('failed') or 'none'}; "
            f"unknown: {d.get('unknown_coins') or 'none'}"
        )
