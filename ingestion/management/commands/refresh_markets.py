"""manage.py refresh_markets — one refresh cycle in the foreground (no worker needed)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ingestion import pipeline


class Command(BaseCommand):
    help = (
        "Run one market refresh cycle now: /coins/markets for the whole universe -> snapshots, ticks, "
        "1m candles, roll-ups. Prints what it did."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--per-page", type=int, default=250)
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument(
            "--reference",
            action="store_true",
            help="also fetch /exchange_rates and /global (vs= conversions and GET /v1/global at once)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from ingestion.coingecko import CoinGeckoClient

        with CoinGeckoClient.from_settings() as client:
            summary = pipeline.refresh_markets(client, per_page=opts["per_page"])
            if opts["reference"]:
                rates = pipeline.refresh_exchange_rates(client)
                world = pipeline.refresh_global(client)
                summary.details["reference"] = {"rates": rates.rows_written, "global": world.rows_written}
        data = summary.as_dict()
        if opts["json"]:
            self.stdout.write(json.dumps(data, default=str))
            return
        c1m = data.get("candles_1m", {})
        self.stdout.write(
            f"refresh: {data['calls']} calls ({len(data['failed_pages'])} pages failed), "
            f"{data['coins_polled']} coins polled, {data.get('ticks_new', 0)} new ticks, "
            f"{data.get('jumps_rejected', 0)} implausible jumps rejected, {data['rejects']} rejects"
        )
        self.stdout.write(
            f"1m candles: {c1m.get('inserted', 0)} inserted, {c1m.get('updated', 0)} updated, "
            f"{c1m.get('unchanged', 0)} unchanged; closed {data.get('closed', {})}; "
            f"roll-ups written {data.get('rollups', {})}; {data['rows_written']} rows written "
            f"in {data['duration_s']} s"
        )
