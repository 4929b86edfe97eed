"""``manage.py hastexo_suspender``: the suspender, for operators without Celery beat.

Run it from cron every ``suspend_interval`` seconds (or with ``--loop``).
"""

import time

from django.core.management.base import BaseCommand

from hastexo_xblock import dispatch, jobs
from hastexo_xblock.conf import get_settings


class Command(BaseCommand):
    help = "Suspend every lab whose learner has gone (enqueues one suspend task each)."

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="run every suspend_interval seconds until stopped")

    def handle(self, *args, loop=False, **options):
        while True:
            count = jobs.run_suspender(dispatch.send)
            self.stdout.write(f"{count} lab(s) claimed for suspension")
            if not loop:
                return
            time.sleep(get_settings()["suspend_interval"])
