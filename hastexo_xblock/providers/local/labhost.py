"""The lab host: one local lab's SSH server, which starts the lab's sandbox and runs sessions in it.

One lab host process runs per local lab (see ``provider.py``), started
detached from the worker as::

    python -I -c <bootstrap> <stack_dir> [--port N] [--setup]

(with ``-I`` and only this package on ``sys.path``: nothing of the worker's
environment or settings reaches it).  It runs as the worker's user, outside
the lab: the learner can neither reach nor signal it.

What it does:

1. Joins the lab's cgroup(s), so that it and everything it starts -- the
   sandbox, the sessions -- is limited, frozen and killed as one.
2. Starts the lab's sandbox (``sandbox.init_command``: bubblewrap, the lab's
   init as PID 1 of the lab's namespaces) and, for ``network: egress``,
   slirp4netns.  If the sandbox dies, the lab host exits; if the lab host
   dies, the sandbox dies with it (``--die-with-parent``).
3. With ``--setup``, runs the template's setup script (``setup.json``) in the
   lab and records its exit status in ``server.json``; on failure it exits 1.
4. Listens on ``127.0.0.1:N`` (or an ephemeral port when ``N`` is taken or 0),
   accepts public-key authentication with ``authorized_keys`` only, and
   serves PTY shells and commands, each run inside the lab through
   ``enter.py`` (a terminal of the lab's own ``devpts``), then writes
   ``{"pid", "port", "init"}`` to ``server.json``.

With ``sandbox: none`` (development only) sessions run as plain child
processes of the lab host instead, which is then a child subreaper so that a
learner's background jobs stay in its process tree.
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
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import cgroups, channels, probe, sandbox, statedir
from .channels import Session, set_winsize, text, wait_fd

log = logging.getLogger("hastexo_xblock.labhost")

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENTER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "enter.py")

#: How long the sandbox (and slirp4netns) may take to start, and a session to enter the lab.
SANDBOX_START_SECONDS = 20.0
ENTER_SECONDS = 20.0
DESKTOP_START_SECONDS = 15.0

NOSANDBOX_WARNING = "local provider is running lab shells without a sandbox (development only)"


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class LabHost:
    """One lab's lab host: its sandbox, its SSH server, its sessions and the reaper."""

    def __init__(self, stack_dir: str) -> None:
        self.dir = statedir.LabDir(os.path.dirname(os.path.abspath(stack_dir)), os.path.basename(stack_dir))
        state = self.dir.read_state() or {}
        self.lab = sandbox.LabSandbox.from_state(state.get("sandbox"))
        self.cgroup = cgroups.LabCgroup.from_state(state.get("cgroups"))
        self.desktop: dict[str, str] | None = state.get("desktop")
        if self.lab.mode == "bwrap" and not (self.lab.bwrap and os.access(self.lab.bwrap, os.X_OK)):
            found = shutil.which("bwrap")
            if not found:
                raise RuntimeError("the lab's sandbox needs bwrap, which is not installed")
            self.lab = sandbox.LabSandbox.from_state({**self.lab.to_state(), "bwrap": found})
        self.lang = os.environ.get("LANG") or "C.UTF-8"
        self.python = sys.executable
        self.user = sandbox.DEFAULT_USER
        self.init: sandbox.LabInit | None = None
        self._monitor: subprocess.Popen[bytes] | None = None
        self._slirp: subprocess.Popen[bytes] | None = None
        self._slirp_exit: int | None = None
        self._children: dict[int, asyncio.Future[int]] = {}
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self.exit_code = 0
        if self.lab.mode == "bwrap":
            self.shell = "/bin/bash"
            self.path = DEFAULT_PATH
            self.home = sandbox.LAB_HOME
        else:
            log.warning(NOSANDBOX_WARNING)
            self.shell = shutil.which("bash", path=DEFAULT_PATH) or "/bin/sh"
            self.path = os.environ.get("PATH") or DEFAULT_PATH
            self.home = self.dir.home

    # -- processes -----------------------------------------------------------

    def _track(self, pid: int) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._children[pid] = fut
        return fut

    def _reap(self) -> None:
        """Reap every exited child: sessions, the sandbox's monitor and (without a sandbox) orphans."""
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
            code = os.waitstatus_to_exitcode(status)
            fut = self._children.pop(info.si_pid, None)
            if fut is not None and not fut.done():
                fut.set_result(code)
            if self._monitor is not None and info.si_pid == self._monitor.pid:
                self._monitor.returncode = code
                if not self._stopping:
                    log.error("the lab's sandbox ended (status %s); stopping", code)
                    self.exit_code = 1
                    if self._stop is not None:
                        self._stop.set()
            if self._slirp is not None and info.si_pid == self._slirp.pid:
                self._slirp.returncode = code
                log.error("slirp4netns ended (status %s): the lab has no network now", code)

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
            name = text(key)
            if name == "LANG" or name.startswith("LC_"):
                env[name] = text(value)
        if term:
            env["TERM"] = term
        return env

    # -- the sandbox -----------------------------------------------------------

    def _write_etc(self) -> None:
        """Write the lab's generated /etc files for the current user name.

        In place, never replaced: a running lab has these very files bound.
        """
        etc = self.dir.file(statedir.ETC_DIR)
        os.makedirs(etc, mode=0o755, exist_ok=True)
        os.chmod(etc, 0o755)  # noqa: S103 - bound read-only into the lab; its parent is 0711
        for name, content in sandbox.etc_files(self.user, self.lab.network).items():
            path = os.path.join(etc, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644), "w") as f:
                f.write(content)
            os.chmod(path, 0o644)

    def _known_user(self) -> str:
        """The user name the lab's passwd file has for the lab's user (the last session's login name)."""
        passwd = statedir.read_text(self.dir.file(statedir.ETC_DIR, "passwd")) or ""
        for line in passwd.splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2] == str(sandbox.LAB_UID) and sandbox.USER_RE.match(fields[0]):
                return fields[0]
        return sandbox.DEFAULT_USER

    def _name_user(self, username: str) -> None:
        """Give the lab's user the login name of the session (``whoami``, the prompt)."""
        if self.lab.mode != "bwrap" or username == self.user or not sandbox.USER_RE.match(username):
            return
        self.user = username
        try:
            self._write_etc()
        except OSError as error:
            log.warning("could not name the lab's user %s: %s", username, error.strerror)

    async def start_sandbox(self) -> None:
        """Start the lab's init in its sandbox (and its network); raise ``RuntimeError`` if it fails."""
        self.user = self._known_user()
        self._write_etc()
        info_r, info_w = os.pipe()
        try:
            argv = sandbox.init_command(self.lab, self.dir.home, self.dir.file(statedir.ETC_DIR), info_w)
            self._monitor = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                pass_fds=[info_w],
                env={"PATH": DEFAULT_PATH, "LANG": self.lang, "HOME": sandbox.LAB_HOME},
                cwd="/",
                close_fds=True,
                **self._as_lab_user(),
            )
            self._track(self._monitor.pid)
            os.close(info_w)
            info_w = -1
            raw = await asyncio.wait_for(channels.read_json(info_r), SANDBOX_START_SECONDS)
        finally:
            if info_w >= 0:
                os.close(info_w)
            os.close(info_r)
        try:
            info = json.loads(raw.decode("utf-8") or "{}")
            deadline = time.monotonic() + SANDBOX_START_SECONDS
            while not sandbox.init_started(int(info["child-pid"])):
                if time.monotonic() > deadline or (self._monitor.returncode is not None):
                    raise RuntimeError("the lab's init did not start")
                await asyncio.sleep(0.002)
            self.init = sandbox.read_init(info)
        except (ValueError, KeyError, OSError, RuntimeError, sandbox.SandboxUnavailable) as error:
            raise RuntimeError(f"the lab's sandbox did not start: {error}") from None
        log.info("sandbox started: init pid %s", self.init.pid)
        if self.lab.network == "egress":
            await self._start_network()

    def _as_lab_user(self) -> dict[str, Any]:
        """Popen arguments that start a process as the lab's own (unprivileged) ids."""
        if not self.lab.drops_ids:
            return {}
        return {"user": self.lab.uid, "group": self.lab.gid, "extra_groups": []}

    async def _start_network(self) -> None:
        assert self.init is not None
        inner = os.open(f"/proc/{self.init.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            outer = fcntl.ioctl(inner, 0xB702)  # NS_GET_PARENT: the user namespace owning the lab's network
        finally:
            os.close(inner)
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            argv = sandbox.slirp_command(self.lab, outer, self.init, ready_w, exit_r)
            # As the lab's user where it may open the tun device (its usual
            # mode); a root worker on a machine that keeps it to root runs it
            # as root, still in slirp4netns's own sandbox.
            as_user = self._as_lab_user() if probe.tun_open_to_all() else {}
            self._slirp = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                pass_fds=[outer, ready_w, exit_r],
                env={"PATH": DEFAULT_PATH},
                close_fds=True,
                **as_user,
            )
            self._track(self._slirp.pid)
            os.close(ready_w)
            ready_w = -1
            os.set_blocking(ready_r, False)
            await asyncio.wait_for(wait_fd(ready_r), SANDBOX_START_SECONDS)
            if not os.read(ready_r, 1):
                raise RuntimeError("slirp4netns did not configure the lab's network")
        finally:
            os.close(outer)
            os.close(ready_r)
            os.close(exit_r)
            if ready_w >= 0:
                os.close(ready_w)
        # Kept open for the lab host's life: slirp4netns exits when it closes.
        self._slirp_exit = exit_w
        log.info("network: egress through slirp4netns (pid %s)", self._slirp.pid)

    def stop_sandbox(self) -> None:
        """End the lab: SIGKILL its init (the kernel kills everything in its PID namespace)."""
        self._stopping = True
        if self.init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init.pid, signal.SIGKILL)
        for child in (self._slirp, self._monitor):
            if child is not None and child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()

    # -- sessions ------------------------------------------------------------

    async def _start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        pty: tuple[int, int, int, int] | None,
        stdio: Mapping[str, Any],
    ) -> Session:
        """Start ``argv`` in the lab (or, without a sandbox, here) and return its session."""
        if self.lab.mode != "bwrap":
            return self._start_plain(argv, env, pty, stdio)
        helper, exited, message, fds = await self._enter(
            argv,
            env,
            stdio,
            pty=pty,
            pids_limit=self.lab.pids_limit,
            # A root lab host protects itself from the lab's OOM kills (main()); sessions are fair game.
            oom_score_adj=0 if os.geteuid() == 0 else None,
        )
        if not message:
            code = await exited
            raise RuntimeError(f"the session could not enter the lab (status {code})")
        pid = int(json.loads(message)["pid"])
        return Session(helper, pid, exited, fds[0] if fds else None)

    async def _enter(
        self, argv: Sequence[str], env: Mapping[str, str], stdio: Mapping[str, Any], **options: Any
    ) -> tuple[int, asyncio.Future[int], bytes, list[int]]:
        """Run ``enter.py`` (see ``sandbox.enter_command`` for ``options``) and receive what it sends.

        Returns the helper's pid, its exit future, its message (empty if it
        failed before sending one) and the descriptors that came with it.
        """
        assert self.init is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with ours:
            try:
                cmd = sandbox.enter_command(
                    self.python, ENTER_SCRIPT, self.init, argv, control_fd=theirs.fileno(), **options
                )
                helper = subprocess.Popen(
                    cmd, pass_fds=[theirs.fileno()], env=dict(env), close_fds=True, start_new_session=True, **stdio
                )
            finally:
                theirs.close()
            exited = self._track(helper.pid)
            helper.returncode = 0  # the reaper owns the status
            ours.setblocking(False)
            message, fds = await asyncio.wait_for(channels.receive_fds(ours), ENTER_SECONDS)
        return helper.pid, exited, message, fds

    async def open_in_lab(self, target: str) -> channels.ForwardSession:
        """A forwarding session to ``unix:/path`` or ``tcp:host:port`` as seen from *inside* the lab.

        For ``direct-streamlocal`` and ``direct-tcpip`` channels (e.g. the
        gateway reaching the lab's VNC server through this SSH server): the
        socket is connected by ``enter.py`` in the lab's namespaces as the
        lab's user, never here, so no path or address a learner controls can
        lead to the host.  Raises ``asyncssh.ChannelOpenError`` when it fails.
        """
        import asyncssh

        if self.lab.mode != "bwrap" or self.init is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "forwarding needs a sandbox")
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        _helper, exited, _message, fds = await self._enter([], {"PATH": DEFAULT_PATH}, quiet, connect=target)
        await exited
        if not fds:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, f"nothing answers at {target} in the lab")
        return await channels.ForwardSession.wrap(socket.socket(fileno=fds[0]))

    def _start_plain(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        pty: tuple[int, int, int, int] | None,
        stdio: Mapping[str, Any],
    ) -> Session:
        """``sandbox: none``: start ``argv`` as a child of the lab host (development only)."""
        if pty is not None:
            master, slave = os.openpty()
            cols, rows, xpix, ypix = pty
            set_winsize(master, rows or 24, cols or 80, xpix, ypix)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                try:
                    os.close(master)
                    os.login_tty(slave)
                    os.chdir(self.home)
                    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                    os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - our own command line
                except BaseException:
                    os._exit(127)
            os.close(slave)
            return Session(pid, pid, self._track(pid), master)
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=self.home, start_new_session=True, close_fds=True, **stdio
        )
        proc.returncode = 0  # the reaper owns the status
        return Session(proc.pid, proc.pid, self._track(proc.pid))

    async def handle(self, process: Any) -> None:
        """Run one SSH session (the server's process factory); a failure ends that session only."""
        try:
            await self._session(process)
        except Exception:  # keep the server up whatever one session does
            log.exception("session failed")
            with contextlib.suppress(Exception):
                process.stderr.write(b"the lab could not start this session\n")
                process.exit(255)

    async def _session(self, process: Any) -> None:
        username = text(process.get_extra_info("username") or "lab")
        if process.subsystem:
            process.stderr.write(b"subsystems are not supported\n")
            process.exit(1)
            return
        self._name_user(username)
        command = process.command
        term = process.term_type
        env = self._env(username, term, process.env or {})
        # A shell is a login shell (profile, prompt); a command runs with
        # "<shell> -c", as sshd does.
        argv = [self.shell, "-l"] if command is None else [self.shell, "-c", text(command)]
        log.info("session for %s: %s%s", username, "pty " if term else "", "shell" if command is None else "exec")
        if term:
            await self._run_pty(process, argv, env)
        else:
            await self._run_pipes(process, argv, env)

    async def _run_pty(self, process: Any, argv: Sequence[str], env: Mapping[str, str]) -> None:
        cols, rows, xpix, ypix = process.term_size
        terminal = (cols or 80, rows or 24, xpix, ypix)
        session = await self._start(argv, env, terminal, {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL})
        await channels.serve_pty(process, session)

    async def _run_pipes(self, process: Any, argv: Sequence[str], env: Mapping[str, str]) -> None:
        pipes = {"in": os.pipe(), "out": os.pipe(), "err": os.pipe()}
        stdio = {"stdin": pipes["in"][0], "stdout": pipes["out"][1], "stderr": pipes["err"][1]}
        ours = {"in": pipes["in"][1], "out": pipes["out"][0], "err": pipes["err"][0]}
        try:
            session = await self._start(argv, env, None, stdio)
        except BaseException:
            for fd in ours.values():
                os.close(fd)
            raise
        finally:
            # The command has its own copies of these ends.
            for fd in stdio.values():
                os.close(fd)
        await channels.serve_pipes(process, session, ours)

    # -- setup ---------------------------------------------------------------

    async def run_setup(self) -> int:
        """Run the template's setup script (from ``setup.json``) in the lab; return its exit code."""
        setup = statedir.read_json(self.dir.file(statedir.SETUP_FILE)) or {}
        script = setup.get("script") or ""
        env = self._env(self.user, None, {})
        env.update({str(k): str(v) for k, v in (setup.get("env") or {}).items()})
        log.info("running the setup script")
        log_fd = os.open(self.dir.file(statedir.SETUP_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(log_fd, "ab") as out, open(os.devnull, "rb") as devnull:
            session = await self._start(
                [self.shell, "-c", script, "setup"], env, None, {"stdin": devnull, "stdout": out, "stderr": out}
            )
        code = await session.exited
        log.info("setup script exited with status %s", code)
        return code

    async def start_desktop(self) -> None:
        """Start the lab's desktop (``sandbox.DESKTOP_SCRIPT``) inside the lab; it runs for the lab's life.

        Returns once its VNC socket is there, or after a while (a slow X
        server is the gateway's to wait for, not the launch's).
        """
        assert self.desktop is not None
        env = {**self._env(self.user, None, {}), "XDG_RUNTIME_DIR": "/run/hastexo"}
        argv = [
            self.shell,
            "-c",
            sandbox.DESKTOP_SCRIPT,
            sandbox.DESKTOP_SOCKET,
            self.desktop.get("geometry", ""),
            self.desktop.get("startup", ""),
        ]
        log_fd = os.open(self.dir.file(statedir.DESKTOP_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(log_fd, "ab") as out, open(os.devnull, "rb") as devnull:
            await self._start(argv, env, None, {"stdin": devnull, "stdout": out, "stderr": out})
        assert self.init is not None
        socket_path = f"/proc/{self.init.pid}/root{sandbox.DESKTOP_SOCKET}"
        deadline = time.monotonic() + DESKTOP_START_SECONDS
        while not os.path.exists(socket_path) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("desktop %s", "started" if os.path.exists(socket_path) else "is still starting")

    # -- main ----------------------------------------------------------------

    async def run(self, port: int, setup: bool) -> int:
        """Run the lab until SIGTERM/SIGINT (or until its sandbox ends); return the exit code."""
        from . import labssh  # imported here (asyncssh) so that the helpers above are cheap to import

        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        server_file = self.dir.file(statedir.SERVER_FILE)
        try:
            if self.lab.mode == "bwrap":
                await self.start_sandbox()
            if setup:
                code = await self.run_setup()
                if code != 0:
                    statedir.atomic_write_json(server_file, {"pid": os.getpid(), "setup_status": code, "port": None})
                    return 1
            if self.desktop and self.lab.mode == "bwrap":
                await self.start_desktop()
            server = await labssh.listen(self, port)
            bound = server.sockets[0].getsockname()[1]
            statedir.atomic_write_json(
                server_file,
                {
                    "pid": os.getpid(),
                    "port": bound,
                    "setup_status": 0 if setup else None,
                    "init": self.init.pid if self.init else None,
                },
            )
            log.info("listening on 127.0.0.1:%s", bound)
            await self._stop.wait()
            log.info("stopping")
            server.close()
            return self.exit_code
        finally:
            self.stop_sandbox()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``labhost <stack_dir> [--port N] [--setup]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="labhost", description="hastexo local lab host")
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
    # Not dumpable: no other process of the same user can read this one's
    # memory (the host key) through /proc or ptrace.
    _prctl(PR_SET_DUMPABLE, 0)
    try:
        host = LabHost(args.stack_dir)
        if host.lab.mode != "bwrap" and not _prctl(PR_SET_CHILD_SUBREAPER, 1):
            log.warning("could not become a child subreaper; background jobs may escape the lab")
        if host.cgroup.dirs:
            host.cgroup.join(os.getpid())
        if os.geteuid() == 0 and host.lab.mode == "bwrap":
            # Under the lab's memory limit the OOM killer picks a lab process, never the lab host.
            try:
                with open("/proc/self/oom_score_adj", "w", encoding="ascii") as f:
                    f.write("-1000")
            except OSError as error:
                log.warning("could not protect the lab host from the OOM killer: %s", error.strerror)
        return asyncio.run(host.run(args.port, args.setup))
    except Exception:
        log.exception("lab host failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
