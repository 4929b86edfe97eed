"""kombu's ``filesystem://`` transport with atomic message writes.

kombu's filesystem channel creates a message file, then locks it and writes
the payload.  A consumer polling in between renames the still-empty file
away, fails to parse it and the worker stops ("Unrecoverable error:
JSONDecodeError").  The faster the polling (the demo polls every 50 ms), the
more often that happens.  Here the payload is written under a name consumers
ignore (``….msg.part``) and renamed into place, which is atomic on POSIX: a
consumer sees a whole message or none.

Used by the demo (``CELERY_BROKER_TRANSPORT``) and by the tests; a real
deployment uses the LMS's broker (RabbitMQ, Redis, …).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    """A filesystem channel whose ``_put`` writes a temporary file and renames it into the queue."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # consumers match "<queue>.msg" exactly, so they skip this name
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """``filesystem://`` with :class:`Channel`."""

    Channel = Channel
