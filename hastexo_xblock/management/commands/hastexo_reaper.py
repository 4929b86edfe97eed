"""``manage.py hastexo_reaper``: the reaper, for operators without Celery beat.

Deletes labs suspended longer than their delete age, retries failed deletes
up to ``delete_attempts``, and deletes orphans (stacks a provider lists under
our naming scheme that no lab record owns) after ``orphan_grace`` seconds.
Run it from cron every ``delete_interval`` seconds (or with ``--loop``).
"""

import time

from django.core.management.base import BaseCommand

from hastexo_xblock import dispatch, jobs
from hastexo_xblock.conf import get_settings


class Command(BaseCommand):
    help = "Delete aged labs and orphan stacks (enqueues one delete task each)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="run every delete_interval seconds until stopped")

    def handle(self, *args, loop=False, **options):
        while True:
            report = jobs.run_reaper(dispatch.send)
            self.stdout.write(
                f"{len(report.claimed)} lab(s) claimed for deletion, {len(report.orphans_deleted)} orphan(s) "
                f"deleted, {report.orphans_waiting} orphan(s) within the grace period"
            )
            if not loop:
                return
            time.sleep(get_settings()["delete_interval"])
