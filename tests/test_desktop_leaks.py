"""No VNC (or RDP) password anywhere it must not be: a desktop lab's whole journey, with a real worker.

The journey: the learner opens a desktop unit (``stack_protocol vnc``), a real
Celery worker launches a local desktop lab, the lab gets a VNC password (as a
Heat template's ``password`` output gives one), a second VNC server in the lab
insists on it, the learner's browser opens that desktop through the gateway
(the gateway answers the password challenge), and the lab is suspended by the
worker.  Then the password is looked for in the page, the handler responses,
the websocket URL, every byte the browser received, the broker's messages, the
worker's log and this process's log (the gateway's included).  The RDP path
(guacd) is checked the same way in ``test_gateway_guac.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import connect

from hastexo_xblock import dispatch, jobs, states
from hastexo_xblock.models import Stack

from . import test_gateway, test_worker
from .rfbclient import RFBClient
from .test_block import call, make_block
from .test_worker import ssh, wait_for
from .workers import WORKER_SETTINGS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

gateway = test_gateway.gateway
worker = test_worker.worker

PASSWORD = "Vnc-Pw-7f3a9c"
DESKTOP_TEMPLATE = "description: desktop lab\ndesktop:\n  geometry: 800x600\n"
XML = """
<hastexo display_name="Desktop" stack_template_path="desktop.yaml" stack_user_name="learner" stack_protocol="vnc">
  <option:ports xmlns:option="http://code.edx.org/xblock/option">[{"name": "Second", "number": 5902}]</option:ports>
</hastexo>
"""


@pytest.fixture
def lab_templates(worker_pool, hastexo_settings):
    """The desktop template, in the shared workers' template directory (tests/workers.py)."""
    with open(os.path.join(worker_pool.template_dir, "desktop.yaml"), "w", encoding="utf-8") as handle:
        handle.write(DESKTOP_TEMPLATE)
    return hastexo_settings(template_dir=worker_pool.template_dir, **WORKER_SETTINGS)


def test_no_vnc_password_reaches_pages_responses_urls_messages_or_logs(worker, gateway, caplog):
    from .test_gateway_vnc import needs_desktop

    needs_desktop()
    caplog.set_level("DEBUG")
    block = make_block("desktop-learner", XML)
    bodies = [call(block, "get_user_stack_status", {"initialize": True})[1]]
    stack = wait_for(Stack.objects.get().pk, states.UP | states.FAILED, timeout=90)
    assert stack.status == states.CREATE_COMPLETE, stack.error_msg
    assert stack.desktop == "unix:/run/hastexo/desktop/vnc.sock"

    # The lab's password, as a Heat template's output brings one; stored encrypted.
    Stack.objects.filter(pk=stack.pk).update(password=PASSWORD)
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM hastexo_xblock_stack WHERE id = %s", [stack.pk])
        assert PASSWORD not in cursor.fetchone()[0]
    # (The password goes in on stdin: asyncssh logs the command line, and that log is checked below.)
    status, _ = asyncio.run(
        ssh(
            stack,
            "mkdir -p ~/.vnc-pw && vncpasswd -f > ~/.vnc-pw/passwd && chmod 600 ~/.vnc-pw/passwd"
            " && (setsid nohup Xtigervnc :2 -geometry 640x480 -rfbport 5902 -interface 127.0.0.1"
            " -SecurityTypes VncAuth -PasswordFile ~/.vnc-pw/passwd >/dev/null 2>&1 < /dev/null &) && sleep 1",
            stdin=PASSWORD + "\n",
        )
    )
    assert status == 0

    bodies.append(call(block, "get_user_stack_status", {"initialize": True})[1])
    block.port = 5902
    code, ticket = call(block, "get_ticket")
    assert code == 200, ticket
    bodies.append(ticket)
    bodies.append(call(block, "keepalive")[1])
    frag = block.runtime.render(block, "student_view")
    page = frag.head_html() + frag.body_html() + frag.foot_html()

    # The browser opens the password-protected desktop with the URL it was given.
    url = urlsplit(ticket["url"])
    assert url.path.endswith("/ws")

    async def browse() -> bytes:
        ws = await connect(f"{gateway.ws_base}?{url.query}", open_timeout=10, max_size=None)
        client = RFBClient(ws)
        received = bytearray()
        original = client._more

        async def recording(timeout: float) -> None:
            before = len(client.buffer)
            await original(timeout)
            received.extend(client.buffer[before:])

        client._more = recording  # type: ignore[method-assign]
        await client.handshake()
        await client.request(incremental=False)
        await client.update()
        await ws.close()
        assert client.security_types == [1] and (client.width, client.height) == (640, 480)
        return bytes(received) + json.dumps(client.messages).encode()

    browser = gateway.call(browse(), timeout=60)
    assert any("accepted security VncAuth" in record.getMessage() for record in caplog.records)

    Stack.objects.filter(pk=stack.pk).update(suspend_by=timezone.now())
    jobs.run_suspender(dispatch.send)
    wait_for(stack.pk, {states.SUSPEND_COMPLETE})
    time.sleep(0.5)

    broker_dir = os.path.join(os.environ["HASTEXO_TEST_RUN_DIR"], "broker")
    messages = ""
    for root, _dirs, files in os.walk(broker_dir):
        for name in files:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                messages += handle.read()
    assert "hastexo_xblock.suspend" in messages
    places = {
        "page": page,
        "responses": json.dumps(bodies),
        "websocket URL": ticket["url"],
        "bytes sent to the browser": browser.decode("latin-1"),
        "broker messages": messages,
        "worker log": worker.output(),
        "test-process and gateway log": caplog.text,
    }
    for where, text in places.items():
        assert PASSWORD not in text, f"the VNC password in the {where}"
