"""``manage.py doctor [--json] [--timeout S] [--check NAME ...]``: is this deployment healthy?

One line per check (ok / warn / FAIL and a short detail), or with ``--json`` a list of
``{check, ok, status, detail}``. Exit status 1 when any check fails (warnings do not)."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from apiplatform.ops import doctor

_LABEL = {doctor.OK: "ok  ", doctor.WARN: "warn", doctor.FAIL: "FAIL"}


class Command(BaseCommand):
    help = "Check configuration, dependencies, migrations, partitions, beat, workers, lags, Stripe and email."
    requires_system_checks: list[str] = []  # the configuration check runs them itself, bounded

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="A JSON list of {check, ok, status, detail}.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=doctor.DEFAULT_TIMEOUT,
            help=f"Seconds each check is given (default {doctor.DEFAULT_TIMEOUT:g}).",
        )
        parser.add_argument(
            "--check",
            action="append",
            dest="only",
            metavar="NAME",
            help="Run only this check (repeatable): " + ", ".join(name for name, _ in doctor.checks_all()),
        )

    def handle(self, *args, **options):
        names = [name for name, _ in doctor.checks_all()]
        unknown = sorted(set(options["only"] or ()) - set(names))
        if unknown:
            raise CommandError(f"unknown check(s): {', '.join(unknown)} (known: {', '.join(names)})")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        results = doctor.run_checks(timeout=options["timeout"], only=options["only"])
        if options["json"]:
            self.stdout.write(json.dumps([r.as_dict() for r in results], indent=2))
        else:
            width = max(len(r.check) for r in results)
            for r in results:
                line = f"{_LABEL[r.status]}  {r.check.ljust(width)}  {r.detail}"
                style = {doctor.OK: self.style.SUCCESS, doctor.WARN: self.style.WARNING}.get(
                    r.status, self.style.ERROR
                )
                self.stdout.write(style(line))
            failed = sum(not r.ok for r in results)
            self.stdout.write(
                f"{len(results)} checks, {failed} failed" if failed else f"{len(results)} checks, all ok"
            )
        if any(not r.ok for r in results):
            sys.exit(1)
