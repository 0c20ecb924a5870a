"""manage.py flush_usage: run one metering flush (Redis -> PostgreSQL) in the foreground."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from tqdm import tqdm

from billing import metering


class Command(BaseCommand):
    help = "Move the usage counted in Redis into PostgreSQL once (safe to run at any time, any number)."

    def handle(self, *args, **options):
        with tqdm(desc="usage batches", unit="batch", disable=options["verbosity"] < 1) as bar:
            result = metering.usage_flush(progress=bar.update)
        self.stdout.write(
            f"applied {result.applied} batch(es) ({result.requests} requests, {result.credits} credits), "
            f"skipped {result.skipped} already applied"
        )
