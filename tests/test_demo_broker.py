"""The demo's filesystem broker never shows consumers a message file before its payload is in it.

kombu's own filesystem channel creates ``<…>.<queue>.msg`` and only then
serialises and writes the payload; a consumer polling in that window takes
an empty file and the worker dies.  The check is deterministic: while a
payload is being serialised, every file a consumer would take must hold a
whole message.
"""

import json
import os

import kombu.transport.filesystem as kombu_filesystem
import pytest
from kombu import Connection

import hastexo_xblock.demo.broker as broker


def incomplete_messages(folder, queue):
    """Message files a consumer would take now that do not hold a whole message."""
    incomplete = []
    for name in os.listdir(folder):
        if name.partition(".")[2] == f"{queue}.msg":
            with open(os.path.join(folder, name), "rb") as handle:
                try:
                    json.loads(handle.read())
                except ValueError:
                    incomplete.append(name)
    return incomplete


@pytest.mark.parametrize(
    ("module", "transport", "atomic"),
    [(broker, "hastexo_xblock.demo.broker:Transport", True), (kombu_filesystem, "filesystem", False)],
    ids=["ours", "kombu"],
)
def test_no_message_is_visible_before_its_payload(tmp_path, monkeypatch, module, transport, atomic):
    folder = str(tmp_path)
    seen_while_writing = []
    real_dumps = module.dumps

    def watching_dumps(payload):
        seen_while_writing.extend(incomplete_messages(folder, "labs"))
        return real_dumps(payload)

    monkeypatch.setattr(module, "dumps", watching_dumps)
    options = {"data_folder_in": folder, "data_folder_out": folder}
    with Connection(transport=transport, transport_options=options) as conn:
        queue = conn.SimpleQueue("labs")
        for number in range(20):
            queue.put({"n": number})
        assert (seen_while_writing == []) is atomic  # kombu's own channel shows the race
        received = [queue.get(timeout=5) for _ in range(20)]
    assert sorted(message.payload["n"] for message in received) == list(range(20))
