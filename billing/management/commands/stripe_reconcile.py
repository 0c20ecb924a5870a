"""manage.py stripe_reconcile [--period YYYY-MM]: our overage per customer and hour against Stripe's
meter event summaries; prints the differences and exits 1 if there are any."""

from __future__ import annotations

import re
import sys

from django.core.management.base import BaseCommand, CommandError

from billing import overage, stripe_api


def _period(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise ValueError(value)
    return value


class Command(BaseCommand):
    help = "Compare the overage we computed with what Stripe's meter holds (exit 1 on any difference)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--period", type=_period, default=None, help="calendar month YYYY-MM (default: this month)"
        )

    def handle(self, *args, period: str | None, **options):
        try:
            differences = overage.reconcile(period=period)
        except stripe_api.BillingNotConfigured:
            raise CommandError("STRIPE_SECRET_KEY is not set") from None
        except (stripe_api.StripeUnavailable, stripe_api.StripeRejected) as exc:
            raise CommandError(str(exc)) from None
        for d in differences:
            when = f"{d.hour:%Y-%m-%d %H}:00Z" if d.hour else "period"
            self.stdout.write(
                f"organization {d.organization_id} customer {d.customer} {when}: ours {d.ours}, "
                f"stripe {d.stripe} (difference {d.ours - d.stripe:+d})"
            )
        if differences:
            self.stdout.write(f"{len(differences)} difference(s)")
            sys.exit(1)
        self.stdout.write("no differences")
