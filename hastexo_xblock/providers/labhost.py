"""The lab host: a small SSH server that gives a learner a shell on this machine.

One lab host process runs per local stack (see ``local.py``).  It is started
detached from the worker as::

    python -m hastexo_xblock.providers.labhost <stack_dir> [--port N] [--setup]

(``local.py`` runs this file by path with ``python -I`` instead, so that the
package's ``__init__`` -- which may import Django -- is never imported; this
module therefore only uses the standard library and asyncssh.)

What it does:

* With ``--setup``, first runs the template's setup script (``setup.json``)
  inside the sandbox and records the exit status in ``server.json``; on a
  non-zero status it kills what the script left behind and exits 1.
* Listens on ``127.0.0.1:N`` (or an ephemeral port when ``N`` is taken or 0)
  and writes ``{"pid", "port"}`` to ``server.json`` atomically once listening.
* Accepts public-key authentication with the key(s) in ``authorized_keys``
  only, for any user name, and serves PTY shells and exec requests, each in
  the sandbox described by ``state.json``'s ``sandbox`` entry.
* Is a child subreaper, so that whatever a learner leaves running in the
  background is re-parented to it and stays in the stack's process tree (the
  provider suspends, resumes and kills the stack by walking that tree); it
  reaps those orphans when they exit.

The helpers at the top (``/proc`` walking, atomic JSON writes, the sandbox
command line) are shared with ``local.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

log = logging.getLogger("hastexo_xblock.labhost")

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

STATE_FILE = "state.json"
SERVER_FILE = "server.json"
SETUP_FILE = "setup.json"
SETUP_LOG = "setup.log"
HOST_KEY_FILE = "host_key"
AUTHORIZED_KEYS_FILE = "authorized_keys"
HOME_DIR = "home"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# How long a session keeps forwarding output after its command exited.  A
# background job that still holds the terminal or the output pipe would
# otherwise keep the session open for ever (OpenSSH hangs in that case).
OUTPUT_GRACE_SECONDS = 1.0

NOSANDBOX_WARNING = "local provider is running lab shells without a sandbox"


# --------------------------------------------------------------------------
# Shared helpers (also used by local.py)
# --------------------------------------------------------------------------


def read_proc_stat(pid: int) -> tuple[str, int, int] | None:
    """Return ``(state, ppid, start_time)`` of ``pid`` from ``/proc/<pid>/stat``.

    ``state`` is the one-letter process state ("R", "S", "T", "Z", ...),
    ``start_time`` the start time in clock ticks since boot (together with the
    pid it identifies a process across pid reuse).  Returns ``None`` when the
    process does not exist.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ")" and
    # spaces, so split after the last ")".
    end = data.rfind(")")
    if end < 0:
        return None
    fields = data[end + 2 :].split()
    try:
        # fields[0] is field 3 of proc(5): state; ppid is field 4; starttime field 22.
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int | None, start_time: int | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, started at ``start_time`` if given."""
    if not pid:
        return False
    info = read_proc_stat(pid)
    if info is None or info[0] in ("Z", "X", "x"):
        return False
    return start_time is None or info[2] == start_time


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, parents before their children.

    Built from one pass over ``/proc/*/stat``; a process forking while this
    runs may be missed, which is why callers loop until nothing new appears.
    """
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        info = read_proc_stat(int(entry))
        if info is None:
            continue
        children.setdefault(info[1], []).append(int(entry))
    result: list[int] = []
    queue = list(children.get(pid, ()))
    while queue:
        child = queue.pop(0)
        if child in result or child == pid:
            continue
        result.append(child)
        queue.extend(children.get(child, ()))
    return result


def atomic_write_json(path: str, data: Mapping[str, Any], mode: int = 0o600) -> None:
    """Write ``data`` as JSON to ``path`` so that readers never see a partial file.

    Writes a temporary file in the same directory, fsyncs it and renames it
    over ``path`` (``os.replace`` is atomic on POSIX).
    """
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: str) -> dict[str, Any] | None:
    """Return the JSON object in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sandbox_command(argv: Sequence[str], sandbox: Mapping[str, Any], home: str) -> list[str]:
    """Return the command line that runs ``argv`` inside the stack's sandbox.

    ``sandbox`` is the ``sandbox`` entry of ``state.json``: ``mode`` ("bwrap"
    or "none"), ``bwrap`` (its path), ``root`` (the provider's root, hidden
    but for ``home``) and ``hidden_paths``.  With mode "none" ``argv`` is
    returned unchanged (the caller sets cwd and HOME).
    """
    if sandbox.get("mode") != "bwrap":
        return list(argv)
    # fmt: off
    cmd = [
        sandbox.get("bwrap") or "bwrap",
        # The host's file system, read-only: the lab has the host's tools.
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",  # noqa: S108 - a private, empty /tmp for the lab
    ]
    # fmt: on
    # The operator's hidden paths first, so that hiding a parent of the
    # provider root cannot hide the home bound below.
    for path in sandbox.get("hidden_paths") or ():
        if os.path.isdir(path):
            cmd += ["--tmpfs", path]
        elif os.path.lexists(path):
            cmd += ["--ro-bind", "/dev/null", path]
        # A path that does not exist has nothing to hide (and bwrap would
        # fail to mount over it).
    root = sandbox.get("root")
    if root:
        # Hide every stack (keys, other learners' homes) ...
        cmd += ["--tmpfs", root]
    # ... but this stack's home, the only writable place besides /tmp.
    cmd += ["--bind", home, home]
    cmd += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "lab", "--chdir", home]
    if os.geteuid() == 0:
        # Without capabilities root inside the sandbox can neither remount
        # the read-only file system nor reach other processes' /proc/<pid>/root
        # or environ (the pid namespace is shared, see local.py).
        cmd += ["--cap-drop", "ALL"]
    # No --unshare-pid and no --die-with-parent: background jobs must outlive
    # the session and be re-parented to the lab host (the subreaper).
    cmd += ["--", *argv]
    return cmd


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _set_winsize(fd: int, rows: int, cols: int, xpixel: int = 0, ypixel: int = 0) -> None:
    # Setting the size on the master makes the kernel send SIGWINCH to the
    # terminal's foreground process group.
    if rows <= 0 or cols <= 0:
        return
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpixel, ypixel))


async def _wait_fd(fd: int, writable: bool = False) -> None:
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


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await _wait_fd(fd, writable=True)
            continue
        view = view[n:]


async def _pump_fd_to(fd: int, writer: Any) -> None:
    """Copy ``fd`` to an SSH writer until EOF (or EIO: every pty slave closed)."""
    while True:
        await _wait_fd(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        writer.write(data)
        await writer.drain()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class LabHost:
    """One stack's lab host: the SSH server, the sessions, the reaper."""

    def __init__(self, stack_dir: str) -> None:
        self.stack_dir = os.path.abspath(stack_dir)
        self.home = os.path.join(self.stack_dir, HOME_DIR)
        state = read_json(os.path.join(self.stack_dir, STATE_FILE)) or {}
        self.sandbox: dict[str, Any] = dict(state.get("sandbox") or {"mode": "none"})
        if self.sandbox.get("mode") == "bwrap" and not (
            self.sandbox.get("bwrap") and os.access(self.sandbox["bwrap"], os.X_OK)
        ):
            found = shutil.which("bwrap")
            if not found:
                raise RuntimeError("sandbox 'bwrap' is configured but bwrap is not installed")
            self.sandbox["bwrap"] = found
        if self.sandbox.get("mode") != "bwrap":
            log.warning(NOSANDBOX_WARNING)
        self.lang = os.environ.get("LANG") or "C.UTF-8"
        self.path = os.environ.get("PATH") or DEFAULT_PATH
        self.shell = shutil.which("bash", path=DEFAULT_PATH) or "/bin/sh"
        self._children: dict[int, asyncio.Future[int]] = {}
        self._stop: asyncio.Event | None = None

    # -- processes ---------------------------------------------------------

    def _track(self, pid: int) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._children[pid] = fut
        return fut

    def _reap(self) -> None:
        """Reap every exited child: our sessions' processes and adopted orphans."""
        while True:
            try:
                # WNOWAIT: look first, so that the status of a tracked child
                # is taken exactly once, below.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if info is None or info.si_pid == 0:
                return
            try:
                _, status = os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                continue
            fut = self._children.pop(info.si_pid, None)
            if fut is not None and not fut.done():
                fut.set_result(os.waitstatus_to_exitcode(status))

    def _env(self, username: str, term: str | None, client_env: Mapping[Any, Any]) -> dict[str, str]:
        env = {
            "PATH": self.path,
            "LANG": self.lang,
            "HOME": self.home,
            "USER": username,
            "LOGNAME": username,
            "SHELL": self.shell,
        }
        # Like OpenSSH's usual "AcceptEnv LANG LC_*": locale only.
        for key, value in client_env.items():
            name = _text(key)
            if name == "LANG" or name.startswith("LC_"):
                env[name] = _text(value)
        if term:
            env["TERM"] = term
        return env

    def _spawn_pty(
        self, argv: Sequence[str], env: Mapping[str, str], size: tuple[int, int, int, int]
    ) -> tuple[int, int]:
        """Start ``argv`` on a new pty as a session leader; return ``(pid, master_fd)``."""
        master, slave = os.openpty()
        cols, rows, xpix, ypix = size
        _set_winsize(master, rows or 24, cols or 80, xpix, ypix)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(master)
                # New session, the pty as controlling terminal, on fds 0-2:
                # the shell gets job control.
                os.login_tty(slave)
                os.chdir(self.home)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - argv is our own command line
            except BaseException:
                os._exit(127)
        os.close(slave)
        os.set_blocking(master, False)
        return pid, master

    async def _handle(self, process: Any) -> None:
        try:
            await self._session(process)
        except Exception:  # keep the server up whatever one session does
            log.exception("session failed")
            with contextlib.suppress(Exception):
                process.exit(255)

    async def _session(self, process: Any) -> None:
        username = _text(process.get_extra_info("username") or "lab")
        if process.subsystem:
            process.stderr.write(b"subsystems are not supported\n")
            process.exit(1)
            return
        command = process.command
        term = process.term_type
        env = self._env(username, term, process.env or {})
        # A shell is a login shell (profile, prompt); a command runs with
        # "<shell> -c", as sshd does.
        argv = [self.shell, "-l"] if command is None else [self.shell, "-c", _text(command)]
        argv = sandbox_command(argv, self.sandbox, self.home)
        log.info("session for %s: %s%s", username, "pty " if term else "", "shell" if command is None else "exec")
        if term:
            await self._run_pty(process, argv, env)
        else:
            await self._run_pipes(process, argv, env)

    async def _finish(
        self, process: Any, exited: asyncio.Future[int], pumps: Iterable[asyncio.Task[Any]], pgid: int
    ) -> None:
        """Wait for the command or the channel; forward the exit status."""
        closed = asyncio.ensure_future(process.channel.wait_closed())
        await asyncio.wait({exited, closed}, return_when=asyncio.FIRST_COMPLETED)
        pumps = list(pumps)
        if not exited.done():
            # The client went away: hang up on the session, as sshd does.
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGHUP)
            for task in pumps:
                task.cancel()
            return
        closed.cancel()
        if pumps:
            _, pending = await asyncio.wait(pumps, timeout=OUTPUT_GRACE_SECONDS)
            for task in pending:
                task.cancel()
        code = exited.result()
        # The channel may have closed meanwhile; then there is no one to tell.
        with contextlib.suppress(Exception):
            if code < 0:
                process.exit_with_signal(signal.Signals(-code).name[3:], False, "", "")
            else:
                process.exit(code)

    async def _pump_stdin(self, process: Any, fds: dict[str, int], pgid: int, pty: bool) -> None:
        """Copy the channel's input to ``fds["in"]``; handle resizes and signals.

        In pipe mode, EOF from the client closes the command's stdin (and
        removes ``"in"`` from ``fds``, so that it is not closed twice).
        """
        fd = fds["in"]
        while True:
            try:
                data = await process.stdin.read(65536)
            except Exception as exc:  # asyncssh delivers signals/resizes as exceptions
                name = type(exc).__name__
                if name == "TerminalSizeChanged" and pty:
                    _set_winsize(fd, exc.height, exc.width, exc.pixwidth, exc.pixheight)
                    continue
                if name == "SignalReceived":
                    try:
                        signum = signal.Signals["SIG" + _text(exc.signal).upper()]
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
                await _write_all(fd, data)
            except OSError:
                # The command stopped reading (exited or closed stdin):
                # drop what is left, like a broken pipe would.
                if not pty:
                    os.close(fds.pop("in"))
                return

    async def _run_pty(self, process: Any, argv: Sequence[str], env: Mapping[str, str]) -> None:
        pid, master = self._spawn_pty(argv, env, process.term_size)
        exited = self._track(pid)
        out = asyncio.ensure_future(_pump_fd_to(master, process.stdout))
        inp = asyncio.ensure_future(self._pump_stdin(process, {"in": master}, pid, pty=True))
        try:
            await self._finish(process, exited, [out], pid)
        finally:
            inp.cancel()
            out.cancel()
            await asyncio.gather(inp, out, return_exceptions=True)
            os.close(master)

    async def _run_pipes(self, process: Any, argv: Sequence[str], env: Mapping[str, str]) -> None:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=self.home,
            start_new_session=True,
            close_fds=True,
        )
        exited = self._track(proc.pid)
        # Work on raw, non-blocking descriptors; detach them from the Popen
        # file objects so that nothing closes them twice.
        fds: dict[str, int] = {}
        for key, f in (("in", proc.stdin), ("out", proc.stdout), ("err", proc.stderr)):
            assert f is not None
            fds[key] = os.dup(f.fileno())
            f.close()
            os.set_blocking(fds[key], False)
        # Our reaper collects the status; tell Popen so that it never waits.
        proc.returncode = 0
        out = asyncio.ensure_future(_pump_fd_to(fds["out"], process.stdout))
        err = asyncio.ensure_future(_pump_fd_to(fds["err"], process.stderr))
        inp = asyncio.ensure_future(self._pump_stdin(process, fds, proc.pid, pty=False))
        try:
            await self._finish(process, exited, [out, err], proc.pid)
        finally:
            for task in (inp, out, err):
                task.cancel()
            await asyncio.gather(inp, out, err, return_exceptions=True)
            for fd in fds.values():
                os.close(fd)

    # -- setup ---------------------------------------------------------------

    async def run_setup(self) -> int:
        """Run the template's setup script (from ``setup.json``); return its exit code."""
        setup = read_json(os.path.join(self.stack_dir, SETUP_FILE)) or {}
        script = setup.get("script") or ""
        env = {
            "PATH": self.path,
            "LANG": self.lang,
            "HOME": self.home,
            "USER": str(setup.get("user") or "lab"),
            "LOGNAME": str(setup.get("user") or "lab"),
            "SHELL": self.shell,
        }
        env.update({str(k): str(v) for k, v in (setup.get("env") or {}).items()})
        argv = sandbox_command([self.shell, "-c", script, "setup"], self.sandbox, self.home)
        log.info("running the setup script")
        with open(os.path.join(self.stack_dir, SETUP_LOG), "ab") as out, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                argv,
                stdin=devnull,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.home,
                start_new_session=True,
                close_fds=True,
            )
        exited = self._track(proc.pid)
        proc.returncode = 0  # the reaper owns the status
        code = await exited
        log.info("setup script exited with status %s", code)
        return code

    # -- main ----------------------------------------------------------------

    async def run(self, port: int, setup: bool) -> int:
        """Run the server until SIGTERM/SIGINT; return the process exit code."""
        import asyncssh  # imported here so that the helpers above are cheap to import

        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        server_file = os.path.join(self.stack_dir, SERVER_FILE)

        if setup:
            code = await self.run_setup()
            if code != 0:
                # Leave nothing of a failed setup running.
                for pid in descendants(os.getpid()):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                atomic_write_json(server_file, {"pid": os.getpid(), "setup_status": code, "port": None})
                return 1

        host_key = asyncssh.read_private_key(os.path.join(self.stack_dir, HOST_KEY_FILE))
        authorized = asyncssh.read_authorized_keys(os.path.join(self.stack_dir, AUTHORIZED_KEYS_FILE))

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: Any) -> None:
                log.info("connection from %s", conn.get_extra_info("peername"))

            def connection_lost(self, exc: Exception | None) -> None:
                log.info("connection closed%s", f": {exc}" if exc else "")

            def begin_auth(self, username: str) -> bool:
                return True  # authentication is always required

            def password_auth_supported(self) -> bool:
                return False

            def kbdint_auth_supported(self) -> bool:
                return False

        options = {
            "server_factory": Server,
            "server_host_keys": [host_key],
            "authorized_client_keys": authorized,
            "process_factory": self._handle,
            "encoding": None,
            # The pty goes straight to the shell: no asyncssh line editor.
            "line_editor": False,
            "allow_scp": False,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "gss_host": None,
            "login_timeout": 60,
            "keepalive_interval": 60,
        }
        server = None
        if port:
            try:
                server = await asyncssh.create_server(host="127.0.0.1", port=port, **options)
            except OSError as exc:
                log.info("port %s is not available (%s); using a new one", port, exc)
        if server is None:
            server = await asyncssh.create_server(host="127.0.0.1", port=0, **options)
        bound = server.sockets[0].getsockname()[1]
        atomic_write_json(server_file, {"pid": os.getpid(), "port": bound, "setup_status": 0 if setup else None})
        log.info("listening on 127.0.0.1:%s", bound)
        await self._stop.wait()
        log.info("stopping")
        server.close()
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``labhost <stack_dir> [--port N] [--setup]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="labhost", description="hastexo local lab SSH host")
    parser.add_argument("stack_dir")
    parser.add_argument("--port", type=int, default=0, help="preferred port (0: any free port)")
    parser.add_argument("--setup", action="store_true", help="run the template's setup script first")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s labhost[%(process)d] %(levelname)s %(message)s",
    )
    logging.Formatter.converter = time.gmtime
    if not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        log.warning("could not become a child subreaper; background jobs may escape the stack")
    # Not dumpable: other processes of the same user (the lab's, too) cannot
    # read this process's memory (the host key) through /proc or ptrace.
    _prctl(PR_SET_DUMPABLE, 0)
    try:
        host = LabHost(args.stack_dir)
        return asyncio.run(host.run(args.port, args.setup))
    except Exception:
        log.exception("lab host failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
