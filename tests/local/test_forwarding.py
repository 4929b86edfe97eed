"""Forwarded connections into a local lab (``direct-tcpip``, ``direct-streamlocal``), as the gateway opens them.

A forwarded connection is opened *inside* the lab -- its loopback, its file
system, as its user -- so that neither an address nor a symlink a learner
plants leads out of the lab to the host.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading

import asyncssh
import pytest

from .conftest import SIMPLE, connect, run, ssh_run

ECHO_SERVER = """\
import os, socket, sys, threading
def echo(conn):
    for data in iter(lambda: conn.recv(65536), b""):
        conn.sendall(data)
def serve(server):
    while True:
        threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
tcp = socket.create_server(("127.0.0.1", 7000))
unix = socket.socket(socket.AF_UNIX)
unix.bind("/tmp/echo.sock")
unix.listen()
threading.Thread(target=serve, args=(unix,), daemon=True).start()
open(os.path.expanduser("~/echo.ready"), "w").close()
serve(tcp)
"""


@pytest.fixture
def lab(provider):
    stack = provider.create("lab1", SIMPLE)
    result = ssh_run(
        stack,
        "cat > echo.py; nohup python3 echo.py >/dev/null 2>&1 & "
        "for i in $(seq 100); do test -e echo.ready && break; sleep 0.05; done; test -e echo.ready",
        stdin=ECHO_SERVER,
    )
    assert result.exit_status == 0, result.stderr
    return stack


def _echo(stack, opener) -> bytes:
    async def go():
        async with connect(stack) as conn:
            reader, writer = await opener(conn)
            writer.write(b"x" * 200_000 + b"\n")
            data = await asyncio.wait_for(reader.readexactly(200_001), 10)
            writer.close()
            return data

    return run(go())


def test_forwarded_tcp_and_unix_connections_reach_the_labs_own_servers(lab):
    expected = b"x" * 200_000 + b"\n"
    assert _echo(lab, lambda conn: conn.open_connection("127.0.0.1", 7000)) == expected
    assert _echo(lab, lambda conn: conn.open_unix_connection("/tmp/echo.sock")) == expected


def test_forwarding_never_reaches_the_host(lab):
    host_dir = tempfile.mkdtemp(prefix="hastexo-host-sock-", dir="/var/tmp")
    os.chmod(host_dir, 0o755)
    path = os.path.join(host_dir, "service.sock")
    accepted = []
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    os.chmod(path, 0o777)
    unix.listen()
    tcp = socket.create_server(("127.0.0.1", 0))
    for server in (unix, tcp):
        threading.Thread(target=lambda s=server: accepted.append(s.accept()), daemon=True).start()
    try:
        # A symlink in the lab to the host's socket, and the host's own port: both lead nowhere.
        assert ssh_run(lab, f"ln -s {path} /tmp/evil.sock && ln -s {path} ~/evil.sock").exit_status == 0

        async def attempt(open_):
            async with connect(lab) as conn:
                with pytest.raises((asyncssh.ChannelOpenError, OSError)):
                    await open_(conn)

        for target in ("/tmp/evil.sock", "/home/lab/evil.sock", path):
            run(attempt(lambda conn, t=target: conn.open_unix_connection(t)))
        run(attempt(lambda conn: conn.open_connection("127.0.0.1", tcp.getsockname()[1])))
        assert accepted == []
    finally:
        unix.close()
        tcp.close()
        os.unlink(path)
        os.rmdir(host_dir)
