"""``manage.py hastexo_stop_local_labs``: stop the lab hosts of every local provider.

Labs that are up are suspended first (their rows say so); then every lab
host process of the ``local`` providers is stopped.  The labs' files stay,
and a learner's next visit resumes the lab from them.  The demo runs this
when it is stopped.
"""

from django.core.management.base import BaseCommand

from hastexo_xblock import lifecycle, states
from hastexo_xblock.conf import get_settings
from hastexo_xblock.models import Stack, transition
from hastexo_xblock.providers import get_provider


class Command(BaseCommand):
    help = "Suspend every up lab on local providers and stop their lab host processes."

    def handle(self, *args, **options):
        settings = get_settings()
        local = [name for name, config in settings["providers"].items() if config.get("type") == "local"]
        for stack in Stack.objects.filter(provider__in=local, status__in=states.UP):
            if transition(stack.pk, states.SUSPEND_PENDING, allowed_from=states.UP):
                lifecycle.suspend(stack.pk)
        stopped = 0
        for name in local:
            provider = get_provider(name, settings["providers"])
            for stack_name in provider.list():
                provider.stop(stack_name)
                stopped += 1
        self.stdout.write(f"{stopped} local lab host(s) stopped")
