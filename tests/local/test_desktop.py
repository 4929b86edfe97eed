"""Desktop labs on the local provider: a VNC server in the lab, reached only through the lab host.

The gateway (issue #12) opens the desktop the way these tests do: an SSH
``direct-streamlocal`` channel to ``extra["vnc"]``, which the lab host
connects from inside the lab.  No VNC password: the socket is the lab user's
alone, inside the lab.
"""

from __future__ import annotations

import asyncio
import shutil
import struct

import pytest

from hastexo_xblock.providers.base import TemplateError
from hastexo_xblock.providers.local import parse_template

from .conftest import connect, host_pid, run, ssh_run

DESKTOP = """\
description: a desktop
desktop:
  geometry: 1024x768
"""


def needs_tigervnc() -> None:
    if not shutil.which("Xtigervnc"):
        pytest.skip("tigervnc-standalone-server is not installed")


async def rfb_handshake(conn, path: str) -> tuple[int, int, str]:
    """Open the desktop over SSH and go as far as the server's ServerInit: ``(width, height, name)``."""
    reader, writer = await conn.open_unix_connection(path)
    version = await asyncio.wait_for(reader.readexactly(12), 10)
    assert version.startswith(b"RFB 003.")
    writer.write(b"RFB 003.008\n")
    count = (await reader.readexactly(1))[0]
    types = list(await reader.readexactly(count))
    assert types == [1], types  # "None" only: no password reaches anybody
    writer.write(bytes([1]))
    assert struct.unpack(">I", await reader.readexactly(4))[0] == 0  # SecurityResult OK
    writer.write(bytes([1]))  # ClientInit, shared
    width, height = struct.unpack(">HH", await reader.readexactly(4))
    await reader.readexactly(16)  # pixel format
    name_length = struct.unpack(">I", await reader.readexactly(4))[0]
    name = (await reader.readexactly(name_length)).decode()
    writer.close()
    return width, height, name


def open_desktop(stack) -> tuple[int, int, str]:
    async def go():
        async with connect(stack) as conn:
            for _ in range(50):
                try:
                    return await rfb_handshake(conn, stack.extra["vnc"].removeprefix("unix:"))
                except (OSError, asyncio.IncompleteReadError) as error:  # still starting
                    last = error
                    await asyncio.sleep(0.2)
            raise AssertionError(f"the desktop did not answer: {last!r}")

    return run(go())


def windows(stack) -> str:
    return ssh_run(stack, "DISPLAY=:1 xwininfo -root -children | grep -E '^ +0x' | sort").stdout


def test_desktop_lab_serves_vnc_through_the_lab_host(provider):
    needs_tigervnc()
    stack = provider.create("lab1", DESKTOP)
    assert stack.extra["vnc"] == "unix:/run/hastexo/desktop/vnc.sock"
    assert open_desktop(stack) == (1024, 768, "lab")
    # The socket is the lab user's alone, inside the lab; nothing listens on TCP.
    listing = ssh_run(stack, "stat -c '%a %U' /run/hastexo/desktop/vnc.sock; cat /proc/net/tcp | wc -l").stdout
    assert listing.split()[:2] == ["600", "learner"] or listing.split()[:2] == ["600", "lab"]
    assert listing.split()[-1] == "1"  # the header line of /proc/net/tcp only


def test_suspend_and_resume_keep_the_desktop_and_its_windows(provider):
    needs_tigervnc()
    stack = provider.create("lab1", DESKTOP)
    open_desktop(stack)
    for _ in range(50):
        before = windows(stack)
        if "xterm" in ssh_run(stack, "ps -eo comm").stdout and before:
            break
    server = host_pid(provider, "lab1", int(ssh_run(stack, "pgrep -x Xtigervnc").stdout))
    assert provider.suspend("lab1").status == "SUSPEND_COMPLETE"
    assert provider.resume("lab1").status == "RESUME_COMPLETE"
    assert host_pid(provider, "lab1", int(ssh_run(stack, "pgrep -x Xtigervnc").stdout)) == server
    assert windows(stack) == before
    assert open_desktop(stack)[:2] == (1024, 768)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("desktop: yes-please\n", "desktop"),
        ("desktop: {geometry: 10x10}\n", "desktop.geometry"),
        ("desktop: {geometry: 1024}\n", "desktop.geometry"),
        ("desktop: {colour: blue}\n", "desktop"),
        ("desktop: {startup: [1]}\n", "desktop.startup"),
    ],
)
def test_malformed_desktops(text, named):
    with pytest.raises(TemplateError, match=named):
        parse_template(text)


def test_desktop_defaults():
    assert parse_template("desktop: false\n").desktop is None
    desktop = parse_template("desktop: true\n").desktop
    assert desktop.geometry == "1280x800" and "xterm" in desktop.startup
