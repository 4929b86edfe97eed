"""Desktop sessions through the gateway, end to end against a real Xtigervnc desktop lab.

Topology::

    RFB client (test) ──ws──▶ uvicorn + gateway ──ssh, direct-streamlocal──▶ local lab host ──▶ Xtigervnc

The lab is a real local-provider desktop lab (bubblewrap sandbox, Xtigervnc on
a Unix socket, twm and an xterm), made once for this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hastexo_xblock import states
from hastexo_xblock.gateway.activity import tracker
from hastexo_xblock.models import Stack
from hastexo_xblock.providers.local import LocalProvider

from . import test_gateway
from .local.conftest import sandbox_problem, ssh_run
from .rfbclient import RFBClient
from .test_gateway import Gateway, ticket_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

gateway = test_gateway.gateway
activity_interval = test_gateway.activity_interval

DESKTOP = "description: a desktop\ndesktop:\n  geometry: 1024x768\n"


class DesktopLab:
    """A local-provider desktop lab shared by the tests of a module."""

    def __init__(self, provider: LocalProvider, name: str) -> None:
        self.provider = provider
        self.name = name
        self.stack = provider.create(name, DESKTOP)

    def run(self, command: str) -> str:
        return ssh_run(self.stack, command).stdout

    def windows(self) -> list[str]:
        """The X windows' ids and names on the lab's display (names only for named windows)."""
        out = self.run("DISPLAY=:1 xwininfo -root -tree | grep -E '^ +0x[0-9a-f]+ \"' | awk '{print $1, $2}' | sort")
        return out.split("\n") if out else []

    def xterm_centre(self) -> tuple[int, int]:
        """Where the xterm's window is on screen (waits for it to be mapped)."""
        for _ in range(100):
            out = self.run("DISPLAY=:1 xwininfo -name xterm 2>/dev/null")
            fields = dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)
            if "Absolute upper-left X" in fields and fields.get("Map State", "").strip() == "IsViewable":
                x, y = int(fields["Absolute upper-left X"]), int(fields["Absolute upper-left Y"])
                return x + int(fields["Width"]) // 2, y + int(fields["Height"]) // 2
            time.sleep(0.2)
        raise AssertionError("the lab's xterm never showed")


def needs_desktop() -> None:
    problem = sandbox_problem()
    if problem or not shutil.which("Xtigervnc"):
        if os.environ.get("CI") or os.environ.get("HASTEXO_REQUIRE_SANDBOX"):
            pytest.fail(f"desktop labs cannot run here: {problem or 'no Xtigervnc'}")
        pytest.skip(f"desktop labs cannot run here: {problem or 'no Xtigervnc'}")


@pytest.fixture(scope="module")
def desktop_lab() -> Iterator[DesktopLab]:
    needs_desktop()
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    root = tempfile.mkdtemp(prefix="hastexo-vnc-test-", dir=base)
    os.chmod(root, 0o711)
    provider = LocalProvider("local", {"type": "local", "root": root})
    lab = DesktopLab(provider, "desk1")
    try:
        lab.xterm_centre()
        yield lab
    finally:
        for name in provider.list():
            provider.delete(name)
        shutil.rmtree(root, ignore_errors=True)


def desktop_stack(lab: DesktopLab, **fields: Any) -> Stack:
    outputs = lab.stack.outputs
    values: dict[str, Any] = {
        "name": lab.name,
        "course_id": "course-v1:hastexo+desktop+test",
        "anonymous_user_id": "learner-d",
        "status": states.CREATE_COMPLETE,
        "protocol": "vnc",
        "ip": outputs.public_ip,
        "ssh_port": outputs.ssh_port,
        "ssh_user": "learner",
        "private_key": outputs.private_key,
        "host_key": lab.stack.extra["host_key"],
        "desktop": lab.stack.extra["vnc"],
    }
    values.update(fields)
    return Stack.objects.create(**values)


async def open_desktop(gateway: Gateway, token: str, **options: Any) -> RFBClient:
    ws = await connect(f"{gateway.ws_base}?ticket={token}", open_timeout=10, max_size=None, **options)
    client = RFBClient(ws)
    await client.handshake()
    return client


def test_desktop_through_the_gateway(gateway, desktop_lab):
    stack = desktop_stack(desktop_lab)

    async def go() -> RFBClient:
        client = await open_desktop(gateway, ticket_for(stack, protocol="vnc"), subprotocols=["binary"])
        assert client.ws.subprotocol == "binary"
        await client.request(incremental=False)
        assert await client.update() == 1024 * 768
        await client.ws.close()
        return client

    client = gateway.call(go(), timeout=60)
    # The browser is offered "None" only, and is told what the session is before any RFB.
    assert client.server_version == b"RFB 003.008\n"
    assert client.security_types == [1]
    assert (client.width, client.height, client.name) == (1024, 768, "lab")
    assert client.messages[:2] == [
        {"type": "status", "status": "connecting"},
        {"type": "status", "status": "connected"},
    ]
    # The real desktop: more than one colour (twm's and xterm's pixels), not a blank screen.
    assert client.colours() > 1


def typed_file_exists(lab: DesktopLab, name: str) -> bool:
    return lab.run(f"test -e ~/{name} && echo yes").strip() == "yes"


def type_into_xterm(gateway: Gateway, lab: DesktopLab, token: str, filename: str, *, expect_change: bool) -> RFBClient:
    x, y = lab.xterm_centre()

    async def go() -> RFBClient:
        client = await open_desktop(gateway, token)
        await client.request(incremental=False)
        await client.update()
        before = bytes(client.pixels)
        await client.pointer(x, y)  # twm: focus follows the pointer
        await client.type(f"touch ~/{filename}\n")
        if expect_change:
            await client.request()
            await client.update()
        else:
            # Something else changes the screen meanwhile: the picture must still update.
            await asyncio.to_thread(lab.run, "DISPLAY=:1 nohup xterm -geometry 20x5+600+500 >/dev/null 2>&1 &")
            deadline = time.monotonic() + 15
            while bytes(client.pixels) == before:
                assert time.monotonic() < deadline, "no framebuffer update reached the read-only viewer"
                await client.request()
                await client.update()
        await client.ws.close()
        return client

    return gateway.call(go(), timeout=60)


def test_typing_reaches_the_lab(gateway, desktop_lab):
    stack = desktop_stack(desktop_lab)
    type_into_xterm(gateway, desktop_lab, ticket_for(stack, protocol="vnc"), "typed-rw", expect_change=True)
    deadline = time.monotonic() + 10
    while not typed_file_exists(desktop_lab, "typed-rw"):
        assert time.monotonic() < deadline, "the typed command did not run in the lab"
        time.sleep(0.2)


def test_read_only_typing_changes_nothing_while_the_picture_updates(gateway, desktop_lab):
    stack = desktop_stack(desktop_lab)
    token = ticket_for(stack, protocol="vnc", read_only=True)
    type_into_xterm(gateway, desktop_lab, token, "typed-ro", expect_change=False)
    time.sleep(1)
    assert not typed_file_exists(desktop_lab, "typed-ro")


def test_desktop_input_counts_as_activity(gateway, desktop_lab, activity_interval):
    activity_interval(1)
    early = timezone.now() + timedelta(seconds=30)
    stack = desktop_stack(desktop_lab, suspend_by=early, suspend_timeout=3600)
    viewer = desktop_stack(
        desktop_lab, name="desk1-viewer", anonymous_user_id="learner-v", suspend_by=early, suspend_timeout=3600
    )

    async def go() -> None:
        watcher = await open_desktop(gateway, ticket_for(viewer, protocol="vnc", read_only=True))
        await watcher.pointer(10, 10)
        await watcher.sync()
        client = await open_desktop(gateway, ticket_for(stack, protocol="vnc"))
        await client.pointer(12, 12)
        await client.sync()
        await tracker.flush()
        await client.ws.close()
        await watcher.ws.close()

    gateway.call(go(), timeout=30)
    stack.refresh_from_db()
    viewer.refresh_from_db()
    assert stack.suspend_by > early + timedelta(seconds=3000)
    assert viewer.suspend_by == early  # a read-only viewer's pointer is not the learner's activity


def test_a_desktop_session_keeps_activity_writes_ahead_of_its_suspend_timeout(gateway, desktop_lab):
    """As a terminal does: while it is open, the activity interval is at most a quarter of the lab's suspend_timeout."""
    stack = desktop_stack(desktop_lab, suspend_timeout=8)

    async def go() -> tuple[float, float]:
        client = await open_desktop(gateway, ticket_for(stack, protocol="vnc"))
        try:
            open_interval = tracker.interval(30)
        finally:
            await client.ws.close()
        for _ in range(50):
            if tracker.interval(30) == 30:
                break
            await asyncio.sleep(0.1)
        return open_interval, tracker.interval(30)

    assert gateway.call(go(), timeout=30) == (2, 30)


async def drain(ws: Any) -> tuple[list[Any], int | None]:
    """All messages until the gateway closes, and its close code."""
    messages = []
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            messages.append(message)
    return messages, ws.close_code


def test_a_missing_desktop_fails_clearly(gateway, desktop_lab):
    stack = desktop_stack(desktop_lab, desktop="unix:/run/hastexo/desktop/nothing.sock")

    async def go() -> tuple[list[Any], int]:
        ws = await connect(f"{gateway.ws_base}?ticket={ticket_for(stack, protocol='vnc')}", open_timeout=10)
        return await drain(ws)

    messages, code = gateway.call(go(), timeout=30)
    assert code == 1011
    assert '"type": "error"' in messages[-1]


def start_password_desktop(lab: DesktopLab, password: str) -> None:
    """A second VNC server in the lab, as Heat labs have them: loopback TCP 5902, VNC password required."""
    lab.run(
        "mkdir -p ~/.vnc-pw && chmod 700 ~/.vnc-pw && "
        f"echo '{password}' | vncpasswd -f > ~/.vnc-pw/passwd && chmod 600 ~/.vnc-pw/passwd && "
        "(setsid nohup Xtigervnc :2 -geometry 640x480 -depth 24 "
        "-rfbport 5902 -interface 127.0.0.1 -SecurityTypes VncAuth -PasswordFile ~/.vnc-pw/passwd "
        "-desktop pwlab >~/.vnc-pw/log 2>&1 < /dev/null &)"
    )
    for _ in range(50):
        if lab.run("grep -c ':170E 00000000:0000 0A' /proc/net/tcp").strip() not in ("", "0"):
            return
        time.sleep(0.2)
    raise AssertionError(f"the password-protected VNC server did not start: {lab.run('cat ~/.vnc-pw/log')}")


def test_vnc_password_is_answered_by_the_gateway(gateway, desktop_lab):
    start_password_desktop(desktop_lab, "s3cret-pw")
    ports = {"ports": [{"name": "Second desktop", "number": 5902}]}
    stack = desktop_stack(desktop_lab, spec=ports, password="s3cret-pw")
    wrong = desktop_stack(desktop_lab, name="desk1-wrong", anonymous_user_id="learner-w", spec=ports, password="nope")

    async def go() -> tuple[RFBClient, list[Any], int | None]:
        client = await open_desktop(gateway, ticket_for(stack, protocol="vnc", port=5902))
        await client.request(incremental=False)
        await client.update()
        await client.ws.close()
        ws = await connect(f"{gateway.ws_base}?ticket={ticket_for(wrong, protocol='vnc', port=5902)}")
        return client, *(await drain(ws))

    client, messages, code = gateway.call(go(), timeout=60)
    # The browser was offered "None" only; the gateway answered the server's challenge.
    assert client.security_types == [1]
    assert (client.width, client.height, client.name) == (640, 480, "pwlab")
    assert code == 1011
    assert messages[-1] == '{"type": "error", "message": "Could not open the lab\'s desktop."}'


def full_frame(gateway: Gateway, token: str) -> RFBClient:
    async def go() -> RFBClient:
        client = await open_desktop(gateway, token)
        await client.request(incremental=False)
        await client.update()
        await client.ws.close()
        return client

    return gateway.call(go(), timeout=60)


def test_suspend_and_resume_keep_the_desktop_session(gateway, desktop_lab):
    """Runs last in this module: it suspends the shared lab (and resumes it)."""
    lab = desktop_lab
    stack = desktop_stack(lab)
    # A window the learner opened through the gateway: typed into the desktop's xterm.
    x, y = lab.xterm_centre()

    async def open_window() -> None:
        client = await open_desktop(gateway, ticket_for(stack, protocol="vnc"))
        await client.pointer(x, y)
        await client.type("xterm -T kept-window -geometry 30x6+300+200 &\n")
        await client.sync()
        await client.ws.close()

    gateway.call(open_window(), timeout=30)
    deadline = time.monotonic() + 15
    while not any("kept-window" in window for window in lab.windows()):
        assert time.monotonic() < deadline, "the window typed for never opened"
        time.sleep(0.2)
    time.sleep(1)  # let it draw
    windows = lab.windows()
    server = lab.run("pgrep -x Xtigervnc | head -1").strip()
    before = full_frame(gateway, ticket_for(stack, protocol="vnc"))

    assert lab.provider.suspend(lab.name).status == states.SUSPEND_COMPLETE
    resumed = lab.provider.resume(lab.name)
    assert resumed.status == states.RESUME_COMPLETE
    lab.stack = resumed
    Stack.objects.filter(pk=stack.pk).update(ssh_port=resumed.outputs.ssh_port, status=states.RESUME_COMPLETE)

    after = full_frame(gateway, ticket_for(stack, protocol="vnc"))
    # The same X server, the same windows, the same picture.
    assert lab.run("pgrep -x Xtigervnc | head -1").strip() == server
    assert lab.windows() == windows
    same = sum(a == b for a, b in zip(before.pixels[::4], after.pixels[::4], strict=True))
    assert same / (len(after.pixels) // 4) > 0.99
