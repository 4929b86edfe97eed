"""The servers of a benchmark run: OpenSSH's sshd, webssh and the gateway, each its own process."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncssh
import psutil

PROMPT = b"lab$ "
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# Login shell of every session: bash without rc files and a known prompt, as in the lab tests.
SHELL_COMMAND = "PS1='lab$ ' exec bash --norc --noprofile -i"


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot be told to take port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout:g} s")
        time.sleep(0.05)


def port_open(port: int, process: subprocess.Popen[bytes] | None = None) -> bool:
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@dataclass
class Keys:
    client: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    host: asyncssh.SSHKey = field(default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))

    @property
    def client_private(self) -> str:
        return self.client.export_private_key().decode()

    @property
    def host_public(self) -> str:
        return self.host.export_public_key().decode().strip()


class Server:
    """A subprocess with its log in the run directory and CPU/RSS probes."""

    process: subprocess.Popen[bytes]

    def _spawn(self, argv: list[str], log: str, env: dict[str, str] | None = None) -> None:
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.ps = psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (not its children)."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


class OpenSSHServer(Server):
    """Debian's sshd with its own config, host key and port; never the system's sshd."""

    def __init__(self, run_dir: str, keys: Keys) -> None:
        self.dir = os.path.join(run_dir, "sshd")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        host_key = os.path.join(self.dir, "host_ed25519")
        with open(host_key, "wb") as handle:
            handle.write(keys.host.export_private_key())
        os.chmod(host_key, 0o600)
        with open(os.path.join(self.dir, "authorized_keys"), "w") as handle:
            handle.write(keys.client.export_public_key().decode())
        home = os.path.join(self.dir, "home")
        os.makedirs(home, exist_ok=True)
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as handle:
            handle.write(
                "\n".join(
                    [
                        f"ListenAddress 127.0.0.1:{self.port}",
                        f"HostKey {host_key}",
                        f"PidFile {self.dir}/sshd.pid",
                        f"AuthorizedKeysFile {self.dir}/authorized_keys",
                        "StrictModes no",
                        "UsePAM no",
                        "PubkeyAuthentication yes",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PermitRootLogin prohibit-password",
                        # Hundreds of sessions connect at once.
                        "MaxStartups 2000:100:2000",
                        "PrintMotd no",
                        "PrintLastLog no",
                        "X11Forwarding no",
                        "AllowTcpForwarding no",
                        "LogLevel ERROR",
                        f"ForceCommand {SHELL_COMMAND}",
                        # bash run by sshd sources ~/.bashrc even for a command; the account's own
                        # start-up files (pyenv, conda, …) must not be part of every login measured.
                        f"SetEnv HOME={home}",
                        "",
                    ]
                )
            )
        if os.geteuid() == 0:
            # sshd's privilege-separation directory (Debian's init script creates it the same way).
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._spawn([SSHD, "-D", "-e", "-f", config], os.path.join(self.dir, "sshd.log"))
        wait_until(lambda: port_open(self.port, self.process), 10, "sshd")

    def cpu_seconds(self) -> float:
        """CPU of the listener and every per-connection sshd (not the shells)."""
        total = 0.0
        for process in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                if process.name() == "sshd":
                    times = process.cpu_times()
                    total += times.user + times.system
        return total


class WebSSHServer(Server):
    """webssh (tornado + paramiko) from PyPI, trusting only the sshd's host key."""

    def __init__(self, run_dir: str, sshd: OpenSSHServer, keys: Keys) -> None:
        directory = os.path.join(run_dir, "webssh")
        os.makedirs(directory, exist_ok=True)
        hostfile = os.path.join(directory, "known_hosts")
        with open(hostfile, "w") as handle:
            handle.write(f"[127.0.0.1]:{sshd.port} {keys.host_public}\n")
        self.port = free_port()
        wssh = os.path.join(os.path.dirname(sys.executable), "wssh")
        self._spawn(
            [
                wssh,
                "--address=127.0.0.1",
                f"--port={self.port}",
                "--policy=reject",
                f"--hostfile={hostfile}",
                f"--syshostfile={hostfile}",
                "--xsrf=False",
                "--maxconn=100000",
                "--encoding=utf-8",  # otherwise it runs a command per connection to guess
                "--timeout=30",
                "--delay=30",
                "--logging=warning",
            ],
            os.path.join(directory, "webssh.log"),
        )
        wait_until(lambda: port_open(self.port, self.process), 15, "webssh")


class GatewayServer(Server):
    """``python -m hastexo_xblock.gateway`` (production settings) on the test database."""

    def __init__(self, run_dir: str, env: dict[str, str], *, workers: int = 1, extra: list[str] | None = None) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "hastexo_xblock.gateway", "--port", str(self.port), "--log-level", "warning"]
        argv += ["--workers", str(workers), *(extra or [])]
        self._spawn(argv, os.path.join(run_dir, f"gateway-{self.port}.log"), env)
        wait_until(lambda: self._healthy(), 30, "the gateway")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {self.process.returncode}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
            return response.status == 200

    def cpu_seconds(self) -> float:
        """CPU of the serving processes (with ``--workers``, all the workers and their supervisor)."""
        total = 0.0
        for process in {self.ps, *self.processes()}:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def processes(self) -> list[psutil.Process]:
        """The serving processes: the one process, or uvicorn's workers under the supervisor."""
        workers = []
        for child in self.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "spawn_main" in " ".join(child.cmdline()):  # not multiprocessing's resource tracker
                    workers.append(child)
        return workers or [self.ps]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/hastexo-gateway/ws"


def gateway_env(database_name: str | None = None) -> dict[str, str]:
    """Environment for a gateway subprocess on the benchmark's (or the suite's) database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if database_name:
        env["HASTEXO_TEST_DB_NAME"] = database_name
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return env


@contextlib.contextmanager
def servers(
    run_dir: str, keys: Keys, database_name: str | None = None, gateway_args: list[str] | None = None
) -> Iterator[tuple]:
    """sshd, webssh and the gateway, stopped again on exit (in reverse order)."""
    started: list[Server] = []
    try:
        sshd = OpenSSHServer(run_dir, keys)
        started.append(sshd)
        webssh = WebSSHServer(run_dir, sshd, keys)
        started.append(webssh)
        gateway = GatewayServer(run_dir, gateway_env(database_name), extra=gateway_args)
        started.append(gateway)
        yield sshd, webssh, gateway
    finally:
        for server in reversed(started):
            server.stop()
