"""``manage.py hastexo_rotate_keys``: re-encrypt every stored secret with the newest key.

Put the new key first in ``encryption_keys`` (keep the old ones after it),
run this command, then remove the old keys.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from hastexo_xblock.models import Stack


class Command(BaseCommand):
    help = "Re-encrypt lab private keys and passwords with the first key of encryption_keys."

    def handle(self, *args, **options):
        count = 0
        for pk in Stack.objects.exclude(private_key="", password="").values_list("pk", flat=True).iterator():
            with transaction.atomic():
                stack = Stack.objects.select_for_update().only("private_key", "password").get(pk=pk)
                # Reading decrypted with any key; saving encrypts with the first.
                stack.save(update_fields=["private_key", "password"])
            count += 1
        self.stdout.write(f"{count} lab record(s) re-encrypted")
