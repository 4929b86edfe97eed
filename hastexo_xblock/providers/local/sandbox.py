"""The isolation of a local lab: what a learner in it can see, reach, touch and use.

This is the module to review for the local provider's security.  The learner
has a shell in the lab and is assumed hostile: the lab must give them no way
to the host, to other labs or to the platform's services, and bounded
resources.  Deny by default:

**Namespaces.**  bubblewrap (``bwrap``) creates, for the lab's init, its own
user, PID, mount, IPC, UTS, network and cgroup namespaces, and a nested user
namespace that cannot create further ones (``--disable-userns``: no
unprivileged user namespaces, and so much less kernel, inside the lab; a
bubblewrap older than 0.8 cannot, and the provider says so).
Every session (shell, command, setup script, hook, check) joins exactly those
namespaces through ``enter.py``, which checks their identities first.  The
lab's ``ps`` shows only the lab; its processes cannot signal, trace or open
``/proc/<pid>/…`` of anything outside.

**Users.**  Inside: uid/gid 1000 (:data:`LAB_UID`), no capabilities,
``no_new_privs``.  Outside: never root.  A worker that is not root runs its
labs as its own user (nothing else is possible without setuid helpers); a
root worker gives every lab a uid of its own, allocated from ``uid_base``, so
that two labs' files are apart even outside their namespaces.

**File system.**  A fresh tmpfs root, read-only once built, holding: ``/usr``
(and the merged-``/usr`` links ``/bin``, ``/lib``, …) read-only; a list of
``/etc`` entries a shell and common tools need (:data:`ETC_ALLOWLIST`), read-only;
generated ``/etc/passwd``, ``group``, ``hosts``, ``hostname`` and
``resolv.conf``; a private ``/proc`` and ``/dev``; size-limited tmpfs
``/tmp``, ``/dev/shm`` and ``/run``; the operator's ``readonly_paths``; and
the learner's home at :data:`LAB_HOME`, the only host path that is writable.
Nothing else of the host exists in the lab: not the provider root, other
labs, the project, its settings, database, broker or secrets.

**Network.**  ``none`` (the default): the lab has its own loopback only; the
host's loopback and addresses, the LMS, the gateway, databases, brokers and
other labs are unreachable.  ``egress``: outbound connections through
slirp4netns (a user-mode network stack outside the lab), with the host's
loopback disabled.  Note that in ``egress`` mode services listening on the
host's *non-loopback* addresses are reachable like any other address.  The
gateway and the workers reach the lab's SSH server (the lab host, outside the
lab) on the host's loopback, as before.

**Limits.**  Memory, processes and CPU through the lab's cgroup where this
machine lets the worker create one (``cgroups.py``); processes also through
``RLIMIT_NPROC``, which the kernel counts per user namespace, so it holds for
an unprivileged worker too; the home's size through a loop-mounted image
(``homefs.py``, root only); ``/tmp``, ``/dev/shm`` and ``/run`` through their
tmpfs sizes.  ``probe.py`` finds what this machine enforces and names the
rest; ``config.py`` holds the settings.

``sandbox: none`` runs sessions as plain processes of the worker's user, with
none of the above: for development only, and logged loudly at every launch.

This module does not import Django or XBlock; the lab host (which runs with
``python -I``) imports it too.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The learner's user inside every lab.
LAB_UID = 1000
LAB_GID = 1000
LAB_HOME = "/home/lab"
LAB_HOSTNAME = "lab"
#: The account name when no session has named one yet (a session's login name replaces it).
DEFAULT_USER = "lab"
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

SHM_SIZE = 64 * 1024**2
RUN_SIZE = 16 * 1024**2

#: The /etc entries a lab sees (read-only); shell-style patterns.  Everything
#: else in the host's /etc -- service configuration, credentials, the host's
#: accounts -- does not exist in the lab.
ETC_ALLOWLIST = (
    "alternatives",
    "bash.bashrc",
    "bash_completion",
    "bash_completion.d",
    "bindresvport.blacklist",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "emacs",
    "environment",
    "fonts",
    "gai.conf",
    "gitconfig",
    "gnutls",
    "host.conf",
    "inputrc",
    "issue",
    "issue.net",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "locale.gen",
    "localtime",
    "lsb-release",
    "magic",
    "magic.mime",
    "manpath.config",
    "mime.types",
    "nanorc",
    "netconfig",
    "networks",
    "nsswitch.conf",
    "os-release",
    "perl",
    "pki",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "python3.*",
    "rpc",
    "screenrc",
    "services",
    "sgml",
    "shells",
    "skel",
    "ssl",
    "terminfo",
    "timezone",
    "vim",
    "wgetrc",
    "X11",
    "xdg",
    "xml",
)
#: Files the lab host writes into the lab's directory and binds read-only into /etc.
GENERATED_ETC = ("passwd", "group", "hosts", "hostname", "resolv.conf")

#: The lab's init: PID 1 of the lab, which reaps orphans and ignores every
#: signal a learner could send it (PID 1 only receives signals it handles; from
#: outside, SIGKILL still ends it, and with it the whole lab).
INIT_SCRIPT = (
    "trap '' HUP INT QUIT TERM USR1 USR2 PIPE ALRM TSTP TTIN TTOU XCPU XFSZ VTALRM PROF WINCH\n"
    "while :; do sleep 2147483647 & wait $!; done\n"
)
INIT_NAME = "lab-init"

#: Where a desktop lab's VNC server listens, inside the lab (only the lab's user may connect; the
#: lab host forwards the gateway's connection to it from inside the lab).
DESKTOP_SOCKET = "/run/hastexo/desktop/vnc.sock"
DESKTOP_PROGRAMS = ("Xtigervnc",)
#: Keeps a lab's desktop up: Xtigervnc on display :1, on a Unix socket and no TCP port, with no VNC
#: password (the socket is the lab user's alone, and only the lab host reaches it, over SSH); then
#: the template's startup programs.  Should the X server end, it starts again.
DESKTOP_SCRIPT = """\
geometry=$1
startup=$2
mkdir -p "${0%/*}"
export DISPLAY=:1
while :; do
    rm -f /tmp/.X1-lock /tmp/.X11-unix/X1 "$0"
    Xtigervnc :1 -geometry "$geometry" -depth 24 -rfbport -1 -rfbunixpath "$0" -rfbunixmode 0600 \\
        -SecurityTypes None -AcceptSetDesktopSize -AlwaysShared -nolisten tcp -desktop lab &
    server=$!
    for i in $(seq 100); do [ -S /tmp/.X11-unix/X1 ] && break; sleep 0.1; done
    (bash -c "$startup" >/dev/null 2>&1 &)
    wait "$server"
    sleep 1
done
"""

#: slirp4netns's fixed addresses: the lab is 10.0.2.100, DNS is 10.0.2.3.
SLIRP_DNS = "10.0.2.3"
TUN_DEVICE = "/dev/net/tun"
SLIRP_MTU = 65520


class SandboxUnavailable(Exception):
    """This machine cannot give labs the isolation the settings ask for; ``str()`` says what is missing."""


# --------------------------------------------------------------------------
# One lab's sandbox
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LabSandbox:
    """How one lab is sandboxed; kept in its ``state.json`` so that any process can manage it."""

    mode: str  # "bwrap" or "none"
    network: str = "none"
    #: The ids the lab's processes have outside its namespaces.
    uid: int = 0
    gid: int = 0
    tmp_limit: int = 256 * 1024**2
    pids_limit: int | None = None
    readonly_paths: tuple[str, ...] = ()
    hidden_paths: tuple[str, ...] = ()
    bwrap: str | None = None
    slirp4netns: str | None = None

    def to_state(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["readonly_paths"] = list(self.readonly_paths)
        data["hidden_paths"] = list(self.hidden_paths)
        return data

    @classmethod
    def from_state(cls, data: Mapping[str, Any] | None) -> LabSandbox:
        data = dict(data or {})
        if data.get("mode") != "bwrap":
            return cls(mode="none")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["readonly_paths"] = tuple(known.get("readonly_paths") or ())
        known["hidden_paths"] = tuple(known.get("hidden_paths") or ())
        return cls(**known)

    @property
    def drops_ids(self) -> bool:
        """Whether the lab's processes must be started as other ids than the worker's (root workers)."""
        return self.mode == "bwrap" and (self.uid, self.gid) != (os.geteuid(), os.getegid())


#: Every namespace a lab gets (user: a nested one that cannot create more, where bwrap can).
NAMESPACE_ARGS = (
    "--unshare-user",
    "--unshare-ipc",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-uts",
    "--unshare-cgroup",
    "--disable-userns",
)
#: What the sandbox cannot do without (bubblewrap 0.5 and later have them all).
REQUIRED_OPTIONS = frozenset(
    {*NAMESPACE_ARGS[:-1], "--as-pid-1", "--die-with-parent", "--info-fd", "--remount-ro", "--symlink", "--uid"}
)
#: What the sandbox uses where this bubblewrap has it (``--disable-userns``: 0.8; ``--size``: 0.7).
OPTIONAL_OPTIONS = frozenset({"--disable-userns", "--size"})

_features: dict[str, frozenset[str]] = {}


def bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bubblewrap knows (from its ``--help``; cached per path)."""
    if bwrap not in _features:
        try:
            result = subprocess.run([bwrap, "--help"], capture_output=True, timeout=10, check=False)
            text = (result.stdout + result.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError):
            text = ""
        _features[bwrap] = frozenset(re.findall(r"(--[a-z0-9-]+)", text))
    return _features[bwrap]


def namespace_args(options: frozenset[str]) -> list[str]:
    return [arg for arg in NAMESPACE_ARGS if arg != "--disable-userns" or arg in options]


def tmpfs(options: frozenset[str], size: int, path: str) -> list[str]:
    """A tmpfs at ``path`` of ``size`` bytes (of no set size on a bubblewrap without ``--size``)."""
    return ["--size", str(size), "--tmpfs", path] if "--size" in options else ["--tmpfs", path]


def system_binds() -> list[str]:
    """/usr read-only, and the merged-/usr links (or, on an unmerged system, the directories)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def etc_entries(etc: str = "/etc") -> list[str]:
    """The names in the host's ``/etc`` that :data:`ETC_ALLOWLIST` lets into a lab."""
    try:
        names = sorted(os.listdir(etc))
    except OSError:
        return []
    return [n for n in names if n not in GENERATED_ETC and any(fnmatch.fnmatchcase(n, p) for p in ETC_ALLOWLIST)]


def etc_files(user: str, network: str) -> dict[str, str]:
    """The generated /etc files of a lab whose user is called ``user``."""
    if not USER_RE.match(user):
        user = DEFAULT_USER
    return {
        "passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{user}:x:{LAB_UID}:{LAB_GID}::{LAB_HOME}:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\n{user}:x:{LAB_GID}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{LAB_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "hostname": f"{LAB_HOSTNAME}\n",
        "resolv.conf": f"nameserver {SLIRP_DNS}\n" if network == "egress" else "",
    }


def init_command(lab: LabSandbox, home: str, etc_dir: str, info_fd: int) -> list[str]:
    """The bwrap command line that starts a lab's init in a new sandbox.

    ``home`` is the lab's home on the host and ``etc_dir`` holds the files of
    :data:`GENERATED_ETC`; bwrap runs as the lab's (outside) user, which must
    be able to reach both (see ``statedir``: the lab's directory is 0711).
    bwrap writes the init's pid and namespaces as JSON to ``info_fd``.
    """
    if lab.mode != "bwrap" or not lab.bwrap:
        raise SandboxUnavailable("this lab has no sandbox")
    options = bwrap_options(lab.bwrap)
    # fmt: off
    argv = [
        lab.bwrap, *namespace_args(options),
        "--die-with-parent", "--as-pid-1", "--new-session",
        "--uid", str(LAB_UID), "--gid", str(LAB_GID), "--hostname", LAB_HOSTNAME,
        *system_binds(),
        "--dir", "/etc",
    ]
    for name in etc_entries():
        argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for name in GENERATED_ETC:
        argv += ["--ro-bind", os.path.join(etc_dir, name), f"/etc/{name}"]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        # The lab's own memory file systems, each with a size.
        *tmpfs(options, SHM_SIZE, "/dev/shm"),  # noqa: S108
        *tmpfs(options, lab.tmp_limit, "/tmp"),  # noqa: S108
        *tmpfs(options, RUN_SIZE, "/run"),
        "--dir", "/var", "--symlink", "../tmp", "/var/tmp",  # noqa: S108 - one budget for both
        "--dir", "/home", "--bind", home, LAB_HOME,
    ]
    # fmt: on
    for path in lab.readonly_paths:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for path in lab.hidden_paths:
        if not any(path == p or path.startswith(p.rstrip("/") + "/") for p in lab.readonly_paths):
            continue  # not visible in the lab anyway
        if os.path.isdir(path):
            argv += [*tmpfs(options, 4096, path), "--remount-ro", path]
        elif os.path.lexists(path):
            argv += ["--ro-bind", "/dev/null", path]
    # fmt: off
    argv += [
        # The root and /dev tmpfs are built: nothing more may be written there.
        "--remount-ro", "/dev", "--remount-ro", "/",
        "--chdir", LAB_HOME,
        "--info-fd", str(info_fd),
        "--", "/bin/bash", "-c", INIT_SCRIPT, INIT_NAME,
    ]
    # fmt: on
    return argv


@dataclass(frozen=True)
class LabInit:
    """A running lab's init: its pid (as the host sees it) and its namespaces' inodes."""

    pid: int
    namespaces: Mapping[str, int]

    def expect(self) -> str:
        return ",".join(f"{name}={inode}" for name, inode in sorted(self.namespaces.items()))


NAMESPACE_NAMES = ("user", "mnt", "net", "ipc", "uts", "cgroup", "pid")


def read_init(info: Mapping[str, Any]) -> LabInit:
    """The lab's init from bwrap's ``--info-fd`` JSON, its namespaces read from ``/proc`` and checked.

    Call it once the init runs the lab's program (:func:`init_started`):
    before that, bwrap is still building the sandbox and has not yet moved
    into the lab's nested user namespace.  bwrap reports the init's pid and
    the namespaces it made (all but that nested user namespace); the ones read
    from ``/proc`` must agree, so that a pid recycled in between is never
    taken for the lab's init.
    """
    pid = int(info["child-pid"])
    namespaces = {name: os.stat(f"/proc/{pid}/ns/{name}").st_ino for name in NAMESPACE_NAMES}
    for name in ("mnt", "net", "ipc", "uts", "cgroup", "pid"):
        reported = info.get(f"{name}-namespace")
        if reported is not None and int(reported) != namespaces[name]:
            raise SandboxUnavailable(f"the lab's init (pid {pid}) is not in the namespaces bwrap made")
    return LabInit(pid=pid, namespaces=namespaces)


def init_started(pid: int) -> bool:
    """Whether bwrap has finished building the sandbox of init ``pid`` and runs the lab's init."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() == "bash"
    except OSError:
        return False


def enter_command(
    python: str,
    enter_script: str,
    init: LabInit,
    argv: Sequence[str],
    *,
    pty: tuple[int, int, int, int] | None = None,
    control_fd: int | None = None,
    pids_limit: int | None = None,
    oom_score_adj: int | None = None,
    connect: str | None = None,
) -> list[str]:
    """The command line that runs ``argv`` inside the lab, or connects to ``connect`` there (see ``enter.py``)."""
    # fmt: off
    cmd = [
        python, "-I", "-S", enter_script,
        "--pid", str(init.pid), "--expect", init.expect(),
        "--uid", str(LAB_UID), "--gid", str(LAB_GID), "--cwd", LAB_HOME,
    ]
    # fmt: on
    if pty is not None:
        cmd += ["--pty", ",".join(str(v) for v in pty)]
    if control_fd is not None:
        cmd += ["--control", str(control_fd)]
    if pids_limit:
        cmd += ["--nproc", str(pids_limit)]
    if oom_score_adj is not None:
        cmd += ["--oom-score-adj", str(oom_score_adj)]
    if connect is not None:
        return [*cmd, "--connect", connect]
    return [*cmd, "--", *argv]


def slirp_command(lab: LabSandbox, outer_userns_fd: int, init: LabInit, ready_fd: int, exit_fd: int) -> list[str]:
    """The slirp4netns command line that gives the lab's network namespace outbound access.

    It joins the lab's outer user namespace (which owns the network
    namespace) through ``outer_userns_fd``; the host's loopback stays
    unreachable from the lab (``--disable-host-loopback``) and slirp4netns
    keeps itself in a sandbox of its own (``--enable-sandbox``,
    ``--enable-seccomp``): it parses the lab's packets.  slirp4netns exits
    when ``exit_fd`` closes (the lab host dies) and writes to ``ready_fd``
    once the lab's interface is configured.
    """
    if not lab.slirp4netns:
        raise SandboxUnavailable("network 'egress' needs slirp4netns")
    # fmt: off
    return [
        lab.slirp4netns, "--configure", f"--mtu={SLIRP_MTU}", "--disable-host-loopback",
        "--enable-sandbox", "--enable-seccomp",
        f"--ready-fd={ready_fd}", f"--exit-fd={exit_fd}",
        f"--userns-path=/proc/self/fd/{outer_userns_fd}", "--netns-type=path", f"/proc/{init.pid}/ns/net",
        "tap0",
    ]
    # fmt: on
