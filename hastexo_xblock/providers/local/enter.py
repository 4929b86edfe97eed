"""Run one command inside a running local lab: join its namespaces, drop every privilege, exec.

The lab host (``labhost.py``) starts this file for every session (a shell, a
command, the template's setup script) as a fresh process::

    python -I -S enter.py --pid INIT --expect user=INODE,mnt=INODE,... --uid 1000 --gid 1000
                          --cwd /home/lab [--pty COLS,ROWS,XPIX,YPIX] [--control FD]
                          [--nproc N] [--oom-score-adj N] -- COMMAND ARG...
    python -I -S enter.py --pid INIT --expect … --uid 1000 --gid 1000 --control FD
                          --connect unix:/PATH | tcp:HOST:PORT

It uses the standard library only (no ``site``): it runs as the worker's user
(root or not) until it has dropped to the lab's user, so it must not import
anything a learner could have written.  A fresh process rather than a fork
of the lab host, because ``setns`` into a user namespace needs a
single-threaded caller.

What it does, in this order (each step fails closed: any error exits 126
before the command runs):

1. Opens the namespaces of the lab's init (``/proc/INIT/ns/*``) and checks
   each inode against ``--expect``: a recycled pid can never lead a session
   into somebody else's namespaces (or the host's).
2. As root: drops every supplementary group (a lab's user namespace denies
   ``setgroups``, so this is the only moment it can be done).
3. Sets ``oom_score_adj`` while the host's ``/proc`` is still visible.
4. Joins the mount, network, IPC, UTS, cgroup and PID namespaces, and the
   lab's user namespace (see :func:`join`).
5. Empties the capability bounding set, becomes ``--uid``/``--gid`` (the
   lab's unprivileged user), clears every capability and sets
   ``no_new_privs``: the command can never regain a privilege, not through
   setuid files, file capabilities or ``execve``.
6. With ``--pty``, opens a terminal in the lab's own ``devpts`` (so ``tty``,
   ``tmux`` and ``sudo``-style tools inside see a real ``/dev/pts/N``) and
   sends its master end to the lab host over ``--control`` with
   ``SCM_RIGHTS``.
7. Forks: the child (the first process of the session *inside* the lab's PID
   namespace) becomes a session leader with the terminal as its controlling
   tty and execs the command; this process stays outside as its parent,
   tells the lab host the child's pid, forwards signals to the child's
   process group and exits with the child's status.

With ``--connect`` there is no command: after step 5 this process connects
a socket to ``PATH`` or ``HOST:PORT`` *inside* the lab -- resolved in the
lab's mount and network namespaces, with the lab user's permissions, so a
symlink planted in the lab leads nowhere outside it -- and sends it to the
lab host (which relays an SSH channel through it: ``direct-streamlocal``
and ``direct-tcpip`` forwarding, e.g. to the lab's VNC server).

The command's environment is this process's environment (the lab host builds
it).  Nothing may be imported or read from the host's file system after the
mount namespace is joined (the host's Python is not in the lab): all of it
happens before.  Exit status: the command's; 126 when the lab could not be entered, 127
when the command could not be executed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys
import termios
from typing import Any

# <sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: The namespaces a session joins (see :func:`join` for the order).
NAMESPACES = (
    ("user", CLONE_NEWUSER),
    ("mnt", CLONE_NEWNS),
    ("net", CLONE_NEWNET),
    ("ipc", CLONE_NEWIPC),
    ("uts", CLONE_NEWUTS),
    ("cgroup", CLONE_NEWCGROUP),
    ("pid", CLONE_NEWPID),
)

# <linux/nsfs.h>: _IO(0xb7, 0x2)
NS_GET_PARENT = 0xB702

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# <linux/capability.h>
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

EXIT_CANNOT_ENTER = 126
EXIT_CANNOT_EXEC = 127

#: Signals the lab host may send to a session; forwarded to the command.
FORWARDED_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
)


class EnterError(Exception):
    """The lab could not be entered safely; nothing of the command ran."""


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise EnterError(f"{what}: {os.strerror(code)}")


def _prctl(option: int, arg: int, what: str) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), what)


def _last_capability() -> int:
    """The highest capability number this kernel knows (read before joining the lab's mount namespace)."""
    try:
        fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY)
        try:
            return int(os.read(fd, 32))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return 63


def parse_expect(text: str) -> dict[str, int]:
    """``"user=1,mnt=2"`` → ``{"user": 1, "mnt": 2}``; every namespace must be named."""
    expected: dict[str, int] = {}
    for item in text.split(","):
        name, _, inode = item.partition("=")
        expected[name.strip()] = int(inode)
    missing = [name for name, _ in NAMESPACES if name not in expected]
    if missing:
        raise EnterError(f"no expected inode for namespace(s) {', '.join(missing)}")
    return expected


def open_namespaces(pid: int, expected: dict[str, int]) -> list[tuple[str, int, int]]:
    """Open ``/proc/PID/ns/*`` and check each against its expected inode; return ``(name, fd, flag)``."""
    opened: list[tuple[str, int, int]] = []
    for name, flag in NAMESPACES:
        fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        opened.append((name, fd, flag))
        inode = os.fstat(fd).st_ino
        if inode != expected[name]:
            raise EnterError(f"namespace {name} of pid {pid} is {inode}, not the lab's {expected[name]}")
        own = os.stat(f"/proc/self/ns/{name}").st_ino
        if inode == own:
            # The lab's init shares a namespace with this process: joining would
            # isolate nothing.  Never run a session like that.
            raise EnterError(f"namespace {name} of pid {pid} is not a namespace of its own")
    return opened


def join(namespaces: list[tuple[str, int, int]]) -> None:
    """Join the lab's namespaces, the user namespace last.

    bubblewrap's ``--disable-userns`` runs the lab in a second user namespace
    nested in the one that owns its other namespaces.  Joining that outer one
    first gives the capabilities over the mount, network, … namespaces; the
    inner one is joined last, so that the session lives where the lab lives.
    """
    user_fd = next(fd for name, fd, _ in namespaces if name == "user")
    own = os.stat("/proc/self/ns/user").st_ino
    outer = fcntl.ioctl(user_fd, NS_GET_PARENT)
    try:
        if os.fstat(outer).st_ino != own:
            _check(_libc.setns(outer, CLONE_NEWUSER), "setns(user, the lab's outer namespace)")
    finally:
        os.close(outer)
    for name, fd, flag in namespaces:
        if name != "user":
            _check(_libc.setns(fd, flag), f"setns({name})")
            os.close(fd)
    _check(_libc.setns(user_fd, CLONE_NEWUSER), "setns(user)")
    os.close(user_fd)


def drop_privileges(uid: int, gid: int, last_capability: int) -> None:
    """Become ``uid``/``gid`` (ids in the lab's user namespace) with no capability left, for good."""
    for cap in range(last_capability + 1):
        _prctl(PR_CAPBSET_DROP, cap, f"dropping capability {cap} from the bounding set")
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "clearing capabilities")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "clearing ambient capabilities")
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "setting no_new_privs")
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise EnterError("the lab's user could not be taken")


def _set_winsize(fd: int, cols: int, rows: int, xpixel: int, ypixel: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows or 24, cols or 80, xpixel, ypixel))


def _send(control: socket.socket | None, message: dict[str, object], fds: list[int]) -> None:
    if control is not None:
        socket.send_fds(control, [json.dumps(message).encode()], fds)


def _exit_like(status: int) -> None:
    """Exit with the child's wait status: its code, or die of the same signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _child(args: argparse.Namespace, slave: int | None) -> None:  # pragma: no cover - runs in the fork
    try:
        os.setsid()
        if slave is not None:
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        try:
            os.chdir(args.cwd)
        except OSError:
            os.chdir("/")
        os.execvp(args.command[0], args.command)  # noqa: S606 - the lab host's own command line
    except OSError as error:
        os.write(2, f"cannot run {args.command[0]}: {error.strerror}\n".encode())
    os._exit(EXIT_CANNOT_EXEC)


def parse_target(text: str) -> tuple[int, Any]:
    """``unix:/path`` or ``tcp:host:port`` (``tcp:[::1]:5901`` for IPv6) → ``(family, address)``."""
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if host and port.isdigit() and 0 < int(port) < 65536:
            return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host, int(port))
    raise EnterError(f"not a connection target: {text!r}")


def connect(control: socket.socket | None, target: str, timeout: float) -> None:
    """Connect a socket to ``target`` here (inside the lab) and hand it to the lab host."""
    family, address = parse_target(target)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except OSError as error:
        raise EnterError(f"cannot connect to {target}: {error.strerror or error}") from None
    _send(control, {"connected": target}, [sock.fileno()])
    sock.close()


def run(args: argparse.Namespace) -> None:
    """Enter the lab and run the command (or connect the socket); never returns."""
    control = socket.socket(fileno=args.control) if args.control is not None else None
    # Everything this process needs is read or loaded before it joins the lab's
    # mount namespace: there, nothing of the host (its Python, its /proc) is left.
    last_capability = _last_capability()
    namespaces = open_namespaces(args.pid, parse_expect(args.expect))
    if os.geteuid() == 0:
        os.setgroups([])
    if args.oom_score_adj is not None:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, str(args.oom_score_adj).encode())
        finally:
            os.close(fd)
    join(namespaces)
    drop_privileges(args.uid, args.gid, last_capability)
    # The lab host's death ends the session's helper (and, through the lab's
    # init, everything in the lab).  Set after the uid change, which clears it.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "setting the parent-death signal")
    if args.connect:
        connect(control, args.connect, args.timeout)
        os._exit(0)
    if args.nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (args.nproc, args.nproc))
    master = slave = None
    if args.pty:
        master, slave = os.openpty()  # /dev/ptmx of the lab's mount namespace
        _set_winsize(master, *args.pty)
    # Block the forwarded signals until the child exists, so none is lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
        if master is not None:
            os.close(master)
        if control is not None:
            control.close()
        _child(args, slave)
    if slave is not None:
        os.close(slave)
    _send(control, {"pid": pid}, [master] if master is not None else [])
    if master is not None:
        os.close(master)
    if control is not None:
        control.close()
    # The child has its own copies of the session's pipes: let go of ours, so
    # that end of file reaches the lab host when the command's side closes.
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(EXIT_CANNOT_EXEC)
        _exit_like(status)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="enter", description="run a command inside a local lab")
    parser.add_argument("--pid", type=int, required=True, help="the lab's init, as the host sees it")
    parser.add_argument("--expect", required=True, help="name=inode of every namespace of the lab")
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--gid", type=int, required=True)
    parser.add_argument("--cwd", default="/")
    parser.add_argument(
        "--pty",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        help="COLS,ROWS,XPIXEL,YPIXEL: run on a new terminal of the lab",
    )
    parser.add_argument("--control", type=int, help="socket fd: receives the child's pid (and the pty master)")
    parser.add_argument("--nproc", type=int, help="RLIMIT_NPROC for the lab's user")
    parser.add_argument("--oom-score-adj", type=int)
    parser.add_argument("--connect", help="unix:/PATH or tcp:HOST:PORT: connect there instead of running a command")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds --connect may take")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args(argv)
    if args.pty is not None and len(args.pty) != 4:
        parser.error("--pty takes COLS,ROWS,XPIXEL,YPIXEL")
    if bool(args.connect) == bool(args.command):
        parser.error("give either a command or --connect")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except (EnterError, OSError, ValueError) as error:
        text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        if isinstance(error, OSError) and error.errno == errno.ENOENT and not isinstance(error, EnterError):
            text = f"the lab is not running ({text})"
        sys.stderr.write(f"enter: cannot enter the lab: {text}\n")
        os._exit(EXIT_CANNOT_ENTER)


if __name__ == "__main__":
    main()
