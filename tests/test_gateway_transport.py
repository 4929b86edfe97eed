"""The gateway's SSH connection on the wire: what a keystroke costs in bytes to the lab.

A real asyncssh server (in-process, port 0) echoes what it receives; between
it and the client sits a TCP relay that counts the bytes the client sends.
asyncssh puts an empty ``SSH_MSG_IGNORE`` before every packet whatever the
cipher; the gateway drops it on its AEAD ciphers (``transport.drop_empty_ignores``).
The same keystrokes through a plain :func:`ssh.connect` with the same cipher
are the control: they must cost about twice the bytes, or the test proves
nothing (and would show that asyncssh changed what it sends).
"""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from hastexo_xblock import ssh
from hastexo_xblock.gateway import terminal, transport

KEYSTROKES = 60


class _Echo(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True


async def _echo(process: asyncssh.SSHServerProcess) -> None:
    while data := await process.stdin.read(1):
        process.stdout.write(data)
    process.exit(0)


async def _counting_relay(target_port: int) -> tuple[asyncio.AbstractServer, list[int]]:
    sent = [0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    sent[0] += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, upstream_writer, True), pipe(upstream_reader, writer, False))

    return await asyncio.start_server(handle, "127.0.0.1", 0), sent


async def _bytes_per_keystroke(use_gateway: bool, cipher: str) -> tuple[float, str]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _Echo,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
        process_factory=_echo,
        encoding=None,
    )
    relay, sent = await _counting_relay(server.sockets[0].getsockname()[1])
    target = ssh.SSHTarget(
        host="127.0.0.1",
        port=relay.sockets[0].getsockname()[1],
        username="learner",
        private_key=client_key.export_private_key().decode(),
        host_key=host_key.export_public_key().decode(),
    )
    try:
        if use_gateway:
            original = terminal.ENCRYPTION_ALGS
            terminal.ENCRYPTION_ALGS = (cipher,)
            try:
                conn = await terminal.connect(target)
            finally:
                terminal.ENCRYPTION_ALGS = original
        else:
            conn = await ssh.connect(target, timeout=10, encryption_algs=(cipher,))
        async with conn:
            writer, reader, _stderr = await conn.open_session(encoding=None)
            writer.write(b"x")  # the first round trip opens the window exchange; count from the next
            await reader.readexactly(1)
            await asyncio.sleep(0.05)
            before = sent[0]
            for _ in range(KEYSTROKES):
                writer.write(b"x")
                assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
            per_key = (sent[0] - before) / KEYSTROKES
            negotiated = conn.get_extra_info("send_cipher")
            writer.write_eof()
    finally:
        relay.close()
        server.close()
    return per_key, negotiated


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
def test_a_keystroke_is_one_packet_on_an_aead_cipher(cipher):
    gateway, negotiated = asyncio.run(_bytes_per_keystroke(True, cipher))
    plain, _ = asyncio.run(_bytes_per_keystroke(False, cipher))
    assert negotiated == cipher
    # One channel-data packet is 36 bytes (AES-GCM) or 40 (ChaCha20-Poly1305); asyncssh's ignore packet
    # before it is as large again.
    assert gateway <= 44, gateway
    assert plain >= 1.8 * gateway, (plain, gateway)


def test_other_ciphers_keep_their_ignore_packets():
    gateway, negotiated = asyncio.run(_bytes_per_keystroke(True, "aes128-ctr"))
    plain, _ = asyncio.run(_bytes_per_keystroke(False, "aes128-ctr"))
    assert negotiated == "aes128-ctr"
    assert abs(gateway - plain) <= 2, (gateway, plain)  # not AEAD: the wrapper is not installed


def test_only_aead_ciphers_both_ways_install_the_wrapper():
    class Conn:
        def __init__(self, send: str, recv: str) -> None:
            self.info = {"send_cipher": send, "recv_cipher": recv}
            self.sent: list[tuple[int, tuple[bytes, ...]]] = []

        def get_extra_info(self, name: str) -> str:
            return self.info[name]

        def send_packet(self, pkttype: int, *args: bytes, **kwargs: object) -> None:
            self.sent.append((pkttype, args))

    mixed = Conn("aes128-gcm@openssh.com", "aes128-ctr")
    assert transport.drop_empty_ignores(mixed) is False
    aead = Conn("aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com")
    assert transport.drop_empty_ignores(aead) is True
    aead.send_packet(2, b"\0\0\0\0")  # the empty ignore: dropped
    aead.send_packet(2, b"\0\0\0\1x")  # an ignore with content: sent
    aead.send_packet(94, b"data")
    assert aead.sent == [(2, (b"\0\0\0\1x",)), (94, (b"data",))]
