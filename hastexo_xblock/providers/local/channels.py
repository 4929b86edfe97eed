"""An SSH session's channel, pumped to and from the command the lab host started for it.

Used by the lab host (``labhost.py``): the command runs on a terminal (the
pty's master end is the lab host's) or on three pipes; input goes in,
output comes out, resizes and signals are passed on, and the command's exit
status goes back to the client.  When the client goes away first, the
session is hung up on (SIGHUP to its process group), as sshd does.  The
non-blocking descriptor helpers the lab host reads its sandbox and
``enter.py`` with (:func:`wait_fd`, :func:`read_json`, :func:`receive_fds`)
are here too.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import termios
from collections.abc import Iterable
from typing import Any

# How long a session keeps forwarding output after its command exited.  A
# background job that still holds the terminal or the output pipe would
# otherwise keep the session open for ever (OpenSSH hangs in that case).
OUTPUT_GRACE_SECONDS = 1.0
READ_SIZE = 65536


def set_winsize(fd: int, rows: int, cols: int, xpixel: int = 0, ypixel: int = 0) -> None:
    # Setting the size on the master makes the kernel send SIGWINCH to the
    # terminal's foreground process group.
    if rows <= 0 or cols <= 0:
        return
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpixel, ypixel))


async def wait_fd(fd: int, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    if writable:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def read_json(fd: int) -> bytes:
    """Read ``fd`` until what was read is one JSON document, or until its end; return the bytes."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        await wait_fd(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            return data
        data += chunk
        with contextlib.suppress(ValueError):
            json.loads(data)
            return data


async def receive_fds(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the descriptor that came with it (at most one) from a non-blocking Unix socket."""
    while True:
        await wait_fd(sock.fileno())
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
        except BlockingIOError:
            continue
        return message, fds


async def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await wait_fd(fd, writable=True)
            continue
        view = view[n:]


async def pump_fd_to(fd: int, writer: Any) -> None:
    """Copy ``fd`` to an SSH writer until EOF (or EIO: every pty slave closed)."""
    while True:
        await wait_fd(fd)
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        writer.write(data)
        await writer.drain()


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Session:
    """A command started for an SSH session: the process the lab host waits for, and its process group."""

    def __init__(self, pid: int, pgid: int, exited: asyncio.Future[int], master: int | None = None) -> None:
        self.pid = pid
        self.pgid = pgid
        self.exited = exited
        self.master = master


async def finish(process: Any, session: Session, pumps: Iterable[asyncio.Task[Any]]) -> None:
    """Wait for the command or the channel; forward the exit status."""
    closed = asyncio.ensure_future(process.channel.wait_closed())
    await asyncio.wait({session.exited, closed}, return_when=asyncio.FIRST_COMPLETED)
    pumps = list(pumps)
    if not session.exited.done():
        # The client went away: hang up on the session, as sshd does.
        with contextlib.suppress(OSError):
            os.killpg(session.pgid, signal.SIGHUP)
        for task in pumps:
            task.cancel()
        return
    closed.cancel()
    if pumps:
        _, pending = await asyncio.wait(pumps, timeout=OUTPUT_GRACE_SECONDS)
        for task in pending:
            task.cancel()
    code = session.exited.result()
    # The channel may have closed meanwhile; then there is no one to tell.
    with contextlib.suppress(Exception):
        if code < 0:
            process.exit_with_signal(signal.Signals(-code).name[3:], False, "", "")
        else:
            process.exit(code)


async def pump_stdin(process: Any, fds: dict[str, int], pgid: int, pty: bool) -> None:
    """Copy the channel's input to ``fds["in"]``; handle resizes and signals.

    In pipe mode, EOF from the client closes the command's stdin (and
    removes ``"in"`` from ``fds``, so that it is not closed twice).
    """
    fd = fds["in"]
    while True:
        try:
            data = await process.stdin.read(READ_SIZE)
        except Exception as exc:  # asyncssh delivers signals/resizes as exceptions
            name = type(exc).__name__
            if name == "TerminalSizeChanged" and pty:
                set_winsize(fd, exc.height, exc.width, exc.pixwidth, exc.pixheight)
                continue
            if name == "SignalReceived":
                try:
                    signum = signal.Signals["SIG" + text(exc.signal).upper()]
                    os.killpg(pgid, signum)
                except (KeyError, OSError):
                    pass
                continue
            if name in ("BreakReceived", "TerminalSizeChanged", "SoftEOFReceived"):
                continue
            return
        if not data:
            if not pty:
                os.close(fds.pop("in"))  # EOF for the command's stdin
            return
        try:
            await write_all(fd, data)
        except OSError:
            # The command stopped reading (exited or closed stdin):
            # drop what is left, like a broken pipe would.
            if not pty:
                os.close(fds.pop("in"))
            return


async def serve_pty(process: Any, session: Session) -> None:
    """Pump ``process`` (an asyncssh server process) to and from the session's terminal until it ends."""
    assert session.master is not None
    master = session.master
    os.set_blocking(master, False)
    out = asyncio.ensure_future(pump_fd_to(master, process.stdout))
    inp = asyncio.ensure_future(pump_stdin(process, {"in": master}, session.pgid, pty=True))
    try:
        await finish(process, session, [out])
    finally:
        inp.cancel()
        out.cancel()
        await asyncio.gather(inp, out, return_exceptions=True)
        os.close(master)


async def serve_pipes(process: Any, session: Session, fds: dict[str, int]) -> None:
    """Pump ``process`` to and from the session's pipes (``fds``: our ends of in, out, err) until it ends."""
    for fd in fds.values():
        os.set_blocking(fd, False)
    out = asyncio.ensure_future(pump_fd_to(fds["out"], process.stdout))
    err = asyncio.ensure_future(pump_fd_to(fds["err"], process.stderr))
    inp = asyncio.ensure_future(pump_stdin(process, fds, session.pgid, pty=False))
    try:
        await finish(process, session, [out, err])
    finally:
        for task in (inp, out, err):
            task.cancel()
        await asyncio.gather(inp, out, err, return_exceptions=True)
        for fd in fds.values():
            os.close(fd)


class _SocketSide(asyncio.Protocol):
    """The lab's end of a forwarded connection: what it sends goes to the SSH channel."""

    def __init__(self) -> None:
        self.channel: Any = None

    def data_received(self, data: bytes) -> None:
        self.channel.write(data)

    def eof_received(self) -> bool:
        self.channel.write_eof()
        return True  # keep our half open until the client closes too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            self.channel.close()

    def pause_writing(self) -> None:
        self.channel.pause_reading()  # the lab's end reads slowly: stop reading the client

    def resume_writing(self) -> None:
        self.channel.resume_reading()


class ForwardSession:
    """An asyncssh TCP or UNIX session relaying a forwarded channel to a socket connected inside the lab.

    Flow control both ways: a full SSH window stops reading the socket, a
    full socket buffer stops reading the channel.
    """

    def __init__(self, transport: asyncio.Transport, side: _SocketSide) -> None:
        self.transport = transport
        self.side = side

    @classmethod
    async def wrap(cls, sock: Any) -> ForwardSession:
        """A session for the connected socket ``sock`` (it then belongs to the session)."""
        side = _SocketSide()
        transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: side, sock=sock)
        # Nothing may reach the channel before it exists: a VNC server speaks first.
        transport.pause_reading()
        return cls(transport, side)

    # -- asyncssh's session interface -------------------------------------------

    def connection_made(self, channel: Any) -> None:
        self.side.channel = channel

    def session_started(self) -> None:
        self.transport.resume_reading()

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport.close()

    def pause_writing(self) -> None:
        self.transport.pause_reading()  # the SSH window is full: stop reading the lab's end

    def resume_writing(self) -> None:
        self.transport.resume_reading()
