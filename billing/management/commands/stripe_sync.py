"""manage.py stripe_sync: make Stripe's catalogue (meter, products, prices) match the plans table."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing import catalogue, stripe_api


class Command(BaseCommand):
    help = (
        "Create or update, idempotently, the Stripe Billing Meter for API credits and a Product, a flat "
        "monthly Price and (with overage) a metered Price per paid plan; store their ids on the plans."
    )

    def handle(self, *args, **options):
        try:
            report = catalogue.stripe_sync(say=self.stdout.write)
        except stripe_api.BillingNotConfigured:
            raise CommandError("STRIPE_SECRET_KEY is not set") from None
        except (stripe_api.StripeUnavailable, stripe_api.StripeRejected) as exc:
            raise CommandError(f"{exc} (nothing is lost: run stripe_sync again)") from None
        self.stdout.write(
            f"done: {len(report.created)} created, {len(report.changed)} changed, "
            f"{len(report.unchanged)} unchanged"
        )
