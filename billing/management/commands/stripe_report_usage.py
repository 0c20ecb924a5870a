"""manage.py stripe_report_usage: one overage reporting cycle in the foreground (the periodic task
``billing.report_overage`` runs the same code)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing import overage, stripe_api


class Command(BaseCommand):
    help = "Send overage credits per organization and hour to the Stripe meter (exactly once)."

    def handle(self, *args, **options):
        try:
            result = overage.report_cycle(say=self.stdout.write)
        except stripe_api.BillingNotConfigured:
            raise CommandError("STRIPE_SECRET_KEY is not set") from None
        except stripe_api.StripeUnavailable as exc:
            raise CommandError(f"{exc}; what was sent is recorded, run again to continue") from None
        for line in result.errors:
            self.stderr.write(line)
        if result.skipped:
            raise CommandError("another reporter holds the lock; try again when it has finished")
