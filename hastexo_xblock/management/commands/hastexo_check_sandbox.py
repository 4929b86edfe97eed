"""``manage.py hastexo_check_sandbox``: what each local provider's sandbox gives labs on this machine.

Run it where the workers run, as the workers' user: it finds out what they
would find out at their first launch (a real sandbox is started) and prints,
per local provider, what is enforced, what is not (and why), and what is
missing.  It fails when a provider would refuse to launch labs.
"""

from django.core.management.base import BaseCommand, CommandError

from hastexo_xblock.conf import get_settings
from hastexo_xblock.providers import get_provider


class Command(BaseCommand):
    help = "Show what the sandbox of each local provider enforces on this machine."

    def handle(self, *args, **options):
        settings = get_settings()
        refused = []
        for name, config in settings["providers"].items():
            if config.get("type") != "local":
                continue
            provider = get_provider(name, settings["providers"])
            caps = provider.capabilities()
            self.stdout.write(
                f"provider {name} (sandbox {provider.settings.mode}, network {provider.settings.network}, "
                f"root {provider.root})"
            )
            for line in caps.enforced(provider.settings):
                self.stdout.write(f"  enforced: {line}")
            for line in caps.unenforced(provider.settings):
                self.stdout.write(f"  NOT enforced: {line}")
            for line in caps.missing(provider.settings):
                self.stdout.write(f"  MISSING (labs are refused): {line}")
                refused.append(name)
        if refused:
            raise CommandError(f"local provider(s) {', '.join(sorted(set(refused)))} cannot launch labs here")
