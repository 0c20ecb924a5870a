"""manage.py set_plan --org SLUG PLAN: move an organization to another plan (effective at once)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from billing import services


class Command(BaseCommand):
    help = "Put an organization on a plan; its next request already sees the new limits."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("plan", help="plan name: free, developer, pro, enterprise, ...")

    def handle(self, *args, org: str, plan: str, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization with slug {org!r}")
        try:
            row = services.organization_plan_set(organization=organization, plan_name=plan)
        except services.UnknownPlan as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{organization.slug} is now on plan {row.plan.name}")
