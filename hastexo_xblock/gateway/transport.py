"""The gateway's SSH packets: no empty ``SSH_MSG_IGNORE`` before every keystroke on AEAD ciphers.

asyncssh sends an empty ``SSH_MSG_IGNORE`` before every channel packet, a
countermeasure it applies to every cipher; with the AEAD ciphers the gateway
prefers, OpenSSH sends none.  :func:`drop_empty_ignores` drops exactly those
packets on one connection (the only place the gateway reaches into an
asyncssh object), so a keystroke is one packet and one ``send`` system call.

Until that was done, the gateway handed asyncssh a transport that gathered
the writes of one event-loop pass into one ``send``; with one packet per
keystroke it had nothing left to gather and cost a loop pass and a Python
call per read, so it was removed (measured in the README).
"""

from __future__ import annotations

from typing import Any

#: Ciphers whose packets need no ``SSH_MSG_IGNORE`` before them: authenticated encryption with a fresh
#: nonce per packet (RFC 4251 9.3.1's chosen-plaintext attack concerns CBC mode only).
AEAD_CIPHERS = frozenset({"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"})

_MSG_IGNORE = 2  # RFC 4253 11.2
_EMPTY_STRING = b"\0\0\0\0"  # an SSH string of length 0


def drop_empty_ignores(conn: Any) -> bool:
    """Stop ``conn`` sending the empty ``SSH_MSG_IGNORE`` asyncssh puts before every packet, on an AEAD cipher.

    asyncssh inserts that packet whatever the cipher (it calls its own
    ``send_packet`` for it); OpenSSH sends none with these ciphers, and
    measured under concurrent typing it was 10-15 % of the gateway's CPU per
    keystroke.  The connection's ``send_packet`` is wrapped on this one
    instance so that exactly that packet — type 2 with an empty payload — is
    skipped; every other packet, ignore packets with content included, goes
    out unchanged.  Nothing happens unless the negotiated cipher is in
    :data:`AEAD_CIPHERS` both ways.  Returns whether the wrapper was installed
    (``tests/test_gateway_transport.py`` checks on a real server that no
    empty ignore arrives, so a change in asyncssh shows there).
    """
    ciphers = {conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")}
    if not ciphers <= AEAD_CIPHERS:
        return False
    send_packet = conn.send_packet

    def send_packet_without_empty_ignore(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == _MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        send_packet(pkttype, *args, **kwargs)

    conn.send_packet = send_packet_without_empty_ignore
    return True
