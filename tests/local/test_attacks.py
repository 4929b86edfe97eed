"""Attacks on a local lab, each typed into a lab's shell as a hostile learner would.

Every one of these worked against the local provider before labs had their own
namespaces (issue #8): the host's ``/`` through ``/proc/$PPID/root``, other
learners' homes through ``/proc/<pid>/cwd``, the platform's services on
loopback, signals to the gateway and the worker, processes left behind by a
reset.  Each must fail now.  ``make test`` runs them as root and again as an
unprivileged worker (``make test-local-unprivileged``).

Two labs share one provider for the whole module: ``attacker`` attacks, and
``victim`` (another learner's lab) must not feel it.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import psutil
import pytest

from hastexo_xblock.providers.local import LocalProvider, processes
from hastexo_xblock.providers.local.provider import SandboxUnavailableError

from .conftest import (
    ROOT_WORKER,
    SIMPLE,
    find_processes,
    host_pid,
    lab_host_pid,
    lab_processes,
    needs_sandbox,
    ssh_run,
    start_background_sleep,
    wait_for,
)

SECRET = secrets.token_hex(16)
PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Listener:
    """A TCP server of the host's, counting the connections it accepts."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses that are not loopback."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                found.append(address.address)
    return found


@pytest.fixture(scope="module")
def world():
    """Two labs, a secret file and a secret in the environment of the host, a stand-in gateway process."""
    needs_sandbox()
    base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    root = tempfile.mkdtemp(prefix="hastexo-attack-test-", dir=base)
    os.chmod(root, 0o711)
    secret_file = os.path.join(base, f"hastexo-host-secret-{SECRET[:8]}")
    with open(secret_file, "w") as f:
        f.write(SECRET)
    os.chmod(secret_file, 0o644)  # readable by anyone on the host: only the sandbox keeps it from the lab
    os.environ["HASTEXO_ATTACK_SECRET"] = SECRET
    gateway = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    provider = LocalProvider("attack", {"type": "local", "root": root})
    world = {
        "root": root,
        "secret_file": secret_file,
        "provider": provider,
        "gateway": gateway,
        "victim": provider.create("victim", SIMPLE),
        "attacker": provider.create("attacker", SIMPLE),
    }
    with open(os.path.join(world["victim"].extra["home"], "diary.txt"), "w") as f:
        f.write(SECRET)
    world["victim_sleep"] = host_pid(provider, "victim", start_background_sleep(world["victim"], "1000.0625"))
    yield world
    gateway.kill()
    os.environ.pop("HASTEXO_ATTACK_SECRET", None)
    for name in provider.list():
        provider.delete(name)
    os.unlink(secret_file)
    subprocess.run(["rm", "-rf", root], check=False)


def attack(world, command: str) -> subprocess.CompletedProcess:
    result = ssh_run(world["attacker"], command)
    return subprocess.CompletedProcess(command, result.exit_status, result.stdout, result.stderr)


def test_proc_leads_nowhere_outside_the_lab(world):
    # The shell's parent is outside the lab's PID namespace: it has no number here.
    assert attack(world, "echo $PPID").stdout.strip() == "0"
    assert attack(world, "ls /proc/$PPID/root/").returncode != 0
    # PID 1 is the lab's own init; its root is the lab's root.
    for path in (world["secret_file"], world["root"], PROJECT, sys.prefix):
        assert attack(world, f"test -e /proc/1/root{shlex.quote(path)}").returncode != 0, path
        assert attack(world, f"test -e {shlex.quote(path)}").returncode != 0, path
    # Every process the lab can see is the lab's: no root, cwd or environment of anything else.
    roots = attack(world, "for p in /proc/[0-9]*; do readlink $p/root; done").stdout.split()
    assert roots and set(roots) == {"/"}
    cwds = attack(world, "for p in /proc/[0-9]*; do readlink $p/cwd; done").stdout.split()
    assert all(cwd.startswith(("/home/lab", "/")) and world["root"] not in cwd for cwd in cwds)
    assert SECRET not in attack(world, "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'").stdout
    assert SECRET not in attack(world, "env").stdout


def test_no_host_path_is_writable(world):
    writable = attack(
        world,
        "find / -xdev -maxdepth 4 -type d 2>/dev/null | while read -r d; do "
        '  if touch "$d/.hx-probe" 2>/dev/null; then echo "$d"; rm -f "$d/.hx-probe"; fi; '
        "done; "
        "for d in /home/lab /tmp /dev/shm /run; do touch $d/.hx-probe && echo $d && rm $d/.hx-probe; done",
    ).stdout.split()
    # Only the lab's home and the lab's own (memory) file systems take writes.
    allowed = ("/home/lab", "/tmp", "/dev/shm", "/run", "/var/tmp")
    assert set(writable) >= {"/home/lab", "/tmp"}
    assert [d for d in writable if not d.startswith(allowed)] == []
    for path in ("/etc/hx-attack", "/usr/hx-attack", "/hx-attack", "/home/hx-attack", "/var/hx-attack"):
        assert attack(world, f"echo x > {path}").returncode != 0
        assert not os.path.exists(path)
    # The lab's /tmp is not the host's.
    assert attack(world, "echo lab > /tmp/hx-attack").returncode == 0
    assert not os.path.exists("/tmp/hx-attack")
    assert attack(world, "echo lab > /proc/sys/kernel/hostname").returncode != 0
    assert socket.gethostname() != "lab"


def test_nothing_of_the_platform_or_other_labs_is_visible(world):
    victim = world["victim"]
    paths = [
        world["root"],
        victim.extra["stack_dir"],
        victim.extra["home"],
        world["attacker"].extra["stack_dir"],  # its own keys and state, too
        PROJECT,
        os.path.join(PROJECT, "hastexo_xblock"),
        sys.prefix,
        "/root",
        "/var/lib/mysql",
        "/var/lib/postgresql",
        "/etc/mysql",
        "/etc/redis",
        "/etc/rabbitmq",
        "/etc/shadow",
    ]
    for path in paths:
        assert attack(world, f"test -e {shlex.quote(path)}").returncode != 0, path
    assert attack(world, "ls /home").stdout.split() == ["lab"]
    named = attack(world, "find / -path /proc -prune -o -path /usr -prune -o -name 'hastexo-host-secret*' -print")
    assert named.stdout.strip() == ""
    # The host's secret file and the victim's diary are in no file the attacker can read (but /usr, the
    # host's programs, which the lab shares read-only).
    found = attack(world, f"grep -rls {SECRET} / --exclude-dir=proc --exclude-dir=usr 2>/dev/null").stdout
    assert found.strip() == ""


def test_no_connection_reaches_the_host(world):
    loopback, anywhere = Listener("127.0.0.1"), Listener("0.0.0.0")
    try:
        targets = [("127.0.0.1", loopback.port), ("127.0.0.1", anywhere.port), ("::1", anywhere.port)]
        targets += [(address, anywhere.port) for address in host_addresses()]
        # Other labs' SSH servers, its own, and whatever the platform runs here (databases, brokers).
        targets += [("127.0.0.1", world["victim"].outputs.ssh_port), ("127.0.0.1", world["attacker"].outputs.ssh_port)]
        for port in (3306, 5432, 6379, 5672, 8000, 8001):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    targets.append(("127.0.0.1", port))
        script = "; ".join(
            f"timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null && echo OPEN {host}:{port}"
            for host, port in targets
        )
        result = attack(world, script + "; echo done")
        assert result.stdout.strip() == "done", result.stdout
        assert loopback.accepted == anywhere.accepted == 0
        # Only the lab's own loopback exists.
        interfaces = attack(world, "ls /sys/class/net 2>/dev/null || tail -n +3 /proc/net/dev | cut -d: -f1")
        assert interfaces.stdout.split() == ["lo"]
    finally:
        loopback.close()
        anywhere.close()


def test_signals_reach_nothing_outside_the_lab(world):
    provider = world["provider"]
    targets = {
        "the test process (a worker)": os.getpid(),
        "a stand-in gateway": world["gateway"].pid,
        "the victim's lab host": lab_host_pid(provider, "victim"),
        "the victim's background job": world["victim_sleep"],
        "the attacker's own lab host": lab_host_pid(provider, "attacker"),
    }
    script = "; ".join(f"kill -STOP {pid}; kill -9 {pid}" for pid in targets.values())
    attack(world, script + "; kill -9 -1; true")
    for what, pid in targets.items():
        assert processes.alive(pid), what
        assert not processes.stopped(pid), what
    # The attacker's own lab survived its own "kill -9 -1" too: its init cannot be killed from inside.
    assert attack(world, "echo alive").stdout == "alive\n"


def test_ps_shows_only_the_lab(world):
    listing = attack(world, "ps -eo pid=,args=").stdout.splitlines()
    pids = [int(line.split()[0]) for line in listing]
    assert 1 in pids and max(pids) < 1000, listing
    assert not [line for line in listing if "python" in line or "labhost" in line or "1000.0625" in line]
    # The host counts the same processes in the lab (plus the lab host, bwrap and the session's helpers).
    assert len(lab_processes(world["provider"], "attacker")) >= len(listing)


def test_the_lab_has_namespaces_of_its_own_and_no_privilege(world):
    provider = world["provider"]
    inner = host_pid(provider, "attacker", 1)
    for name in ("user", "pid", "mnt", "net", "ipc", "uts", "cgroup"):
        ours = os.stat(f"/proc/self/ns/{name}").st_ino
        assert os.stat(f"/proc/{inner}/ns/{name}").st_ino != ours, name
    # The lab's user is never root outside; with a root worker every lab has a user of its own.
    lab_uid = psutil.Process(inner).uids().real
    assert lab_uid != 0
    victim_uid = psutil.Process(host_pid(provider, "victim", 1)).uids().real
    assert (lab_uid != victim_uid) if ROOT_WORKER else (lab_uid == victim_uid == os.getuid())
    status = attack(world, "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/self/status").stdout
    assert "NoNewPrivs:\t1" in status
    for line in status.splitlines():
        if line.startswith("Cap"):
            assert line.split()[1] == "0000000000000000", line
    # No way up: no new user namespaces, setuid programs change nothing.
    assert attack(world, "unshare -U -r true").returncode != 0
    assert attack(world, "su -c id root </dev/null").returncode != 0
    assert attack(world, "id -u").stdout.strip() == "1000"


def test_nothing_of_a_deleted_lab_survives(world):
    provider = world["provider"]
    lab = provider.create("doomed", SIMPLE)
    ssh_run(lab, "nohup sleep 1000.1875 >/dev/null 2>&1 &")
    ssh_run(lab, "setsid nohup sleep 1000.3125 >/dev/null 2>&1 &")
    ssh_run(lab, "(setsid sh -c 'nohup sleep 1000.4375 >/dev/null 2>&1 &' &)")
    markers = ("1000.1875", "1000.3125", "1000.4375")
    assert all(find_processes(f"sleep {m}") for m in markers)
    everything = lab_processes(provider, "doomed")
    provider.delete("doomed")
    assert [pid for pid in everything if processes.alive(pid)] == []
    assert not any(find_processes(f"sleep {m}") for m in markers)


def test_a_killed_lab_host_takes_its_lab_along(world):
    # The learner's processes must not outlive their lab host (a crash, an OOM kill, an operator's kill).
    provider = world["provider"]
    lab = provider.create("orphaned", SIMPLE)
    ssh_run(lab, "setsid nohup sleep 1000.5625 >/dev/null 2>&1 &")
    assert find_processes("sleep 1000.5625")
    os.kill(lab_host_pid(provider, "orphaned"), signal.SIGKILL)
    assert wait_for(lambda: not find_processes("sleep 1000.5625"))
    provider.delete("orphaned")


@pytest.mark.parametrize("network", ["egress"])
def test_egress_reaches_out_but_never_the_hosts_loopback(make_provider, network):
    needs_sandbox()
    addresses = host_addresses()
    if not addresses:
        pytest.skip("this host has no address besides loopback to reach")
    provider: LocalProvider = make_provider(network=network)
    tun_problem = provider.capabilities().tun_problem
    if tun_problem:
        # This machine keeps /dev/net/tun to root: an unprivileged worker refuses egress labs, and says why.
        assert not ROOT_WORKER
        with pytest.raises(SandboxUnavailableError) as excinfo:
            provider.create("outbound", SIMPLE)
        assert "/dev/net/tun" in excinfo.value.detail
        return
    lab = provider.create("outbound", SIMPLE)
    loopback, anywhere = Listener("127.0.0.1"), Listener("0.0.0.0")
    try:
        reach = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{addresses[0]}/{anywhere.port}' && echo OPEN"
        assert ssh_run(lab, reach).stdout == "OPEN\n"
        assert wait_for(lambda: anywhere.accepted == 1)
        # 10.0.2.2 is slirp4netns's way to the host's loopback: disabled.  127.0.0.1 is the lab's own.
        for host, port in (("10.0.2.2", loopback.port), ("127.0.0.1", loopback.port), ("10.0.2.2", anywhere.port)):
            result = ssh_run(lab, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null && echo OPEN")
            assert result.stdout == "", (host, port)
        assert loopback.accepted == 0
        assert ssh_run(lab, "cat /etc/resolv.conf").stdout.startswith("nameserver 10.0.2.3")
    finally:
        loopback.close()
        anywhere.close()
        provider.delete("outbound")
