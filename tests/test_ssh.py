"""The one pinned-host-key SSH login (``ssh.py``), used by the gateway's terminals and the workers alike."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from hastexo_xblock import remote, ssh
from hastexo_xblock.gateway import terminal


def target(lab, host_key: str) -> ssh.SSHTarget:
    client = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    return ssh.SSHTarget(host="127.0.0.1", port=lab.port, username="learner", private_key=client, host_key=host_key)


def test_one_definition_serves_the_gateway_and_the_workers():
    assert terminal.HostKeyMismatch is remote.HostKeyMismatch is ssh.HostKeyMismatch
    assert terminal.SSHTarget is remote.SSHTarget is ssh.SSHTarget
    assert terminal.TerminalError is ssh.SSHError and issubclass(ssh.SSHError, OSError)


def test_an_impostor_is_a_host_key_mismatch_for_both_callers(ssh_lab):
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    impostor = target(ssh_lab, other)
    with pytest.raises(ssh.HostKeyMismatch):
        asyncio.run(ssh.connect(impostor, timeout=5))
    with pytest.raises(ssh.HostKeyMismatch):
        asyncio.run(remote.run_script(impostor, "true", timeout=5))
    with pytest.raises(ssh.HostKeyMismatch):
        asyncio.run(terminal.Terminal.open(impostor, connect_timeout=5))


def test_the_right_key_gets_as_far_as_the_login(ssh_lab):
    # The test server accepts no one: past the key exchange, the login itself is refused.
    with pytest.raises(ssh.ConnectFailed, match="authentication refused"):
        asyncio.run(ssh.connect(target(ssh_lab, ssh_lab.host_key), timeout=5))


@pytest.mark.parametrize("host_key", ["", "not a key", "# ssh-ed25519 AAAA"])
def test_no_pinned_key_no_connection(ssh_lab, host_key):
    with pytest.raises(ssh.HostKeyNotPinned):
        asyncio.run(ssh.connect(target(ssh_lab, host_key), timeout=5))


def test_the_environment_cannot_loosen_the_pinning(ssh_lab):
    """Options a caller passes cannot replace the trusted keys."""
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(ssh.HostKeyMismatch):
        asyncio.run(ssh.connect(target(ssh_lab, other), timeout=5, known_hosts=None))
