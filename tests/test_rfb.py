"""The gateway's RFB filter at the byte level: message boundaries, read-only, activity, limits."""

from __future__ import annotations

import struct

import pytest

from hastexo_xblock.gateway import rfb

SET_PIXEL_FORMAT = struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
SET_ENCODINGS = struct.pack(">BxH", 2, 3) + struct.pack(">iii", 0, 7, -223)
UPDATE_REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 1024, 768)
KEY = struct.pack(">BBxxI", 4, 1, ord("x"))
POINTER = struct.pack(">BBHH", 5, 1, 100, 200)
CUT_TEXT = struct.pack(">Bxxxi", 6, 5) + b"hello"
EXTENDED_CUT_TEXT = struct.pack(">Bxxxi", 6, -6) + b"\x10\x00\x00\x01zz"
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 1024, 768)
FENCE = struct.pack(">BxxxIB", 248, 0x80000002, 3) + b"abc"
XVP = struct.pack(">BxBB", 250, 1, 4)
DESKTOP_SIZE = struct.pack(">BxHHBx", 251, 800, 600, 1) + struct.pack(">IHHHHI", 0, 0, 0, 800, 600, 0)
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, ord("x"), 45)

PASSIVE = [SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, CONTINUOUS, FENCE]
INPUT = [KEY, POINTER, CUT_TEXT, EXTENDED_CUT_TEXT, XVP, DESKTOP_SIZE, QEMU_KEY]
ALL = [SET_PIXEL_FORMAT, KEY, SET_ENCODINGS, POINTER, UPDATE_REQUEST, CUT_TEXT, CONTINUOUS, QEMU_KEY]
ALL += [FENCE, EXTENDED_CUT_TEXT, XVP, DESKTOP_SIZE, UPDATE_REQUEST]


def feed_all(filt: rfb.ClientFilter, chunks: list[bytes]) -> tuple[bytes, bool, int]:
    out, activity, dropped = b"", False, 0
    for chunk in chunks:
        result = filt.feed(chunk)
        out += result.forward
        activity |= result.activity
        dropped += result.dropped
    return out, activity, dropped


@pytest.mark.parametrize("read_only", [False, True])
def test_every_split_point_gives_the_same_result(read_only):
    stream = b"".join(ALL)
    expected = b"".join(m for m in ALL if not (read_only and m in INPUT))
    for cut in range(1, len(stream)):
        filt = rfb.ClientFilter(read_only=read_only)
        out, _, dropped = feed_all(filt, [stream[:cut], stream[cut:]])
        assert out == expected, cut
        assert dropped == (sum(m in INPUT for m in ALL) if read_only else 0)
        assert filt.pending == 0


@pytest.mark.parametrize("read_only", [False, True])
def test_byte_by_byte(read_only):
    stream = b"".join(ALL)
    filt = rfb.ClientFilter(read_only=read_only)
    out, _, _ = feed_all(filt, [stream[i : i + 1] for i in range(len(stream))])
    assert out == b"".join(m for m in ALL if not (read_only and m in INPUT))


def test_read_only_drops_key_pointer_and_cut_text_and_keeps_the_rest():
    filt = rfb.ClientFilter(read_only=True)
    for message in INPUT:
        result = filt.feed(message)
        assert (result.forward, result.dropped, result.activity) == (b"", 1, False)
    for message in PASSIVE:
        assert filt.feed(message).forward == message


def test_a_message_is_held_until_complete():
    filt = rfb.ClientFilter(read_only=False)
    assert filt.feed(CUT_TEXT[:9]).forward == b""
    assert filt.pending == 9
    assert filt.feed(CUT_TEXT[9:] + KEY[:3]).forward == CUT_TEXT
    assert filt.feed(KEY[3:]).forward == KEY


def test_input_is_activity_and_the_rest_is_not():
    for message in (KEY, POINTER, CUT_TEXT, QEMU_KEY):
        assert rfb.ClientFilter(read_only=False).feed(message).activity
    for message in [*PASSIVE, DESKTOP_SIZE]:
        assert not rfb.ClientFilter(read_only=False).feed(message).activity


@pytest.mark.parametrize(
    "data",
    [
        bytes([7, 0, 0, 0]),  # unknown type: boundaries are lost, nothing after it may pass
        bytes([255, 1]) + bytes(10),  # QEMU audio: not something a viewer sends
        struct.pack(">Bxxxi", 6, rfb.MAX_MESSAGE),  # a cut text beyond the limit
    ],
)
def test_unparseable_streams_are_refused(data):
    for read_only in (False, True):
        with pytest.raises(rfb.RFBError):
            rfb.ClientFilter(read_only=read_only).feed(KEY + data)


def test_version_parsing():
    assert rfb.parse_version(b"RFB 003.008\n") == (3, 8)
    for bad in (b"RFB 003.008", b"HTTP/1.1 200", b"RFB 00x.008\n"):
        with pytest.raises(rfb.RFBError):
            rfb.parse_version(bad)


def test_vnc_auth_response_is_des_with_the_mirrored_password():
    # That it is the right DES is shown against a real Xtigervnc (test_gateway_vnc.py, VncAuth).
    challenge = bytes(range(16))
    assert rfb.vnc_auth_response("password", challenge) != rfb.vnc_auth_response("passwort", challenge)
    # Only the first eight characters count, as every VNC server does it.
    assert rfb.vnc_auth_response("12345678", challenge) == rfb.vnc_auth_response("12345678-and-more", challenge)
    assert len(rfb.vnc_auth_response("", challenge)) == 16
    with pytest.raises(rfb.RFBError):
        rfb.vnc_auth_response("x", b"short")
