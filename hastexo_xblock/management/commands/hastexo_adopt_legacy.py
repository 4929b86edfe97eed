"""``manage.py hastexo_adopt_legacy``: adopt the labs of the original hastexo XBlock (see ``legacy/adopt.py``)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...legacy.adopt import adopt


class Command(BaseCommand):
    help = (
        "Make this project's lab records for the stacks in the original hastexo XBlock's tables "
        "(hastexo_stack / stackamole_stack, same database): status from the provider, address, keys "
        "(encrypted), status history. Idempotent; reports what it adopted and what it could not; deletes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="report what would be adopted; write nothing")
        parser.add_argument(
            "--ssh-timeout",
            type=float,
            default=10.0,
            help="seconds to wait for a running lab's SSH server when pinning its host key (default 10)",
        )
        parser.add_argument("--quiet-already", action="store_true", help="do not list rows adopted by earlier runs")

    def handle(self, *args, dry_run: bool = False, ssh_timeout: float = 10.0, quiet_already: bool = False, **options):
        report = adopt(dry_run=dry_run, ssh_timeout=ssh_timeout)
        if not report.tables:
            self.stdout.write(
                "No table of the original hastexo XBlock (hastexo_stack, stackamole_stack) in this database."
            )
            return
        for result in report.results:
            if result.outcome == "already" and quiet_already:
                continue
            line = result.line()
            if result.outcome == "not_adopted":
                self.stdout.write(self.style.WARNING(line))
            elif result.outcome == "adopted" and result.detail:
                self.stdout.write(self.style.NOTICE(line))
            else:
                self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(report.summary()))
        if report.not_adopted:
            self.stdout.write(
                "Rows not adopted keep their stacks (nothing was deleted); fix what is said above and run the "
                "command again, which adopts them then."
            )
