"""``manage.py alerts_rotate_secret_key [--batch-size N]``: re-encrypt every webhook signing secret
under the newest key of ALERTS_SECRET_KEYS (the second step of a key rotation; docs/alerts.md).

Prints progress after every batch and a summary. Exit status 1 when some secret is not decryptable
with any configured key (their endpoint ids are listed): put the key that encrypted them back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from marketdata.alerts import services


class Command(BaseCommand):
    help = "Re-encrypt every webhook signing secret under the first key of ALERTS_SECRET_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Endpoints read at a time (500).")

    def handle(self, *args, **options):
        def report(state: services.ReencryptProgress) -> None:
            self.stdout.write(
                f"{state.seen}/{state.total} endpoints: {state.reencrypted} re-encrypted, "
                f"{state.current} already under the newest key, {len(state.failed)} not decryptable"
            )

        state = services.endpoint_secrets_reencrypt(batch_size=options["batch_size"], progress=report)
        if state.failed:
            ids = ", ".join(str(pk) for pk in state.failed[:50]) + (" ..." if len(state.failed) > 50 else "")
            raise CommandError(
                f"{len(state.failed)} secret(s) not decryptable with any key in ALERTS_SECRET_KEYS "
                f"(endpoints {ids}): put back the key that encrypted them, after the newest, and run again."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"done: {state.reencrypted} re-encrypted, {state.current} already under the newest key "
                f"(of {state.total}). With every process already started with this key first, the keys after "
                "it in ALERTS_SECRET_KEYS can be removed now."
            )
        )
