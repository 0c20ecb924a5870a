"""`manage.py setup_schedules [--reset]`: register every app's periodic tasks in django-celery-beat."""

from django.core.management.base import BaseCommand

from apiplatform.jobs.schedules import schedules_setup


class Command(BaseCommand):
    help = (
        "Register the periodic tasks every app declares in its schedules.py in django-celery-beat "
        "(idempotent). Existing entries, possibly edited by an operator, are kept unless --reset."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset", action="store_true", help="Restore task, schedule and arguments of existing entries."
        )

    def handle(self, *args, reset: bool = False, **options):
        report = schedules_setup(reset=reset)
        for state in ("created", "reset", "kept"):
            for name in report[state]:
                self.stdout.write(f"{state:8} {name}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(report['created'])} created, {len(report['reset'])} reset, {len(report['kept'])} kept"
            )
        )
