"""``manage.py create_api_key --org SLUG [--create-org] [--plan NAME] [--name ...] [--test]``

Prints the new key alone on the LAST line of output (scripts: ``KEY=$(... | tail -n1)``).
The organization and the key come from accounts' services; ``--plan`` puts the organization on a
plan (``billing.services.organization_plan_set``) in the same transaction: all or nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services.api_keys import api_key_create
from accounts.services.organizations import organization_create
from billing import services


class Command(BaseCommand):
    help = "Create an API key for an organization and print it alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--create-org", action="store_true", help="Create the organization if missing")
        parser.add_argument("--org-name", default=None, help="Name for --create-org (default: the slug)")
        parser.add_argument("--plan", default=None, help="Set the organization's plan")
        parser.add_argument("--name", default="cli key", help="Key name")
        parser.add_argument("--test", action="store_true", help="Create a test-mode key (cs_test_...)")
        parser.add_argument("--expires-in", type=int, default=None, help="Seconds until the key expires")

    def handle(self, *args, **opts):
        slug = opts["org"].strip()
        with transaction.atomic():
            organization = Organization.objects.filter(slug=slug).first()
            if organization is None:
                if not opts["create_org"]:
                    raise CommandError(f"no organization with slug {slug!r} (use --create-org to create it)")
                organization = organization_create(name=opts["org_name"] or slug, slug=slug)
                self.stdout.write(f"created organization {organization.slug}")
            if opts["plan"]:
                try:
                    services.organization_plan_set(organization=organization, plan_name=opts["plan"])
                except Exception as exc:
                    raise CommandError(f"could not set plan {opts['plan']!r}: {exc}") from exc
                self.stdout.write(f"plan of {organization.slug}: {opts['plan']}")
            expires_at = None
            if opts["expires_in"]:
                expires_at = timezone.now() + timedelta(seconds=opts["expires_in"])
            api_key, full_key = api_key_create(
                organization=organization,
                name=opts["name"],
                environment="test" if opts["test"] else "live",
                expires_at=expires_at,
            )
        self.stdout.write(f"created key {api_key.prefix} ({api_key.name}) for {organization.slug}")
        self.stdout.write(full_key)
