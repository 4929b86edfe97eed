"""The websocket protocol definition (shared with the front end) and the control-message parser."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from hastexo_xblock.gateway import protocol
from hastexo_xblock.gateway.protocol import CloseCode, Ping, ProtocolViolation, Resize, parse_control

ACTIONS = {"ended", "new_ticket", "check_status", "reconnect", "give_up"}


def test_the_definition_is_one_json_file_the_front_end_can_import() -> None:
    path = resources.files("hastexo_xblock").joinpath("static", "js", "gateway-protocol.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == protocol.DEFINITION
    codes = [entry["code"] for entry in data["close_codes"].values()]
    assert len(codes) == len(set(codes)), "a close code is defined twice"
    for name, entry in data["close_codes"].items():
        assert entry["action"] in ACTIONS, name
        assert entry["meaning"], name
        # Application codes live in 4000-4999; the others are the RFC 6455 ones a server may send.
        assert 4000 <= entry["code"] <= 4999 or entry["code"] in (1000, 1008, 1009, 1011, 1012), name
        assert CloseCode[name] == entry["code"]


def test_codes_after_which_the_browser_must_not_reconnect() -> None:
    # A changed host identity, an unsupported protocol, a port not offered, a broken message.
    for code in (4011, 4400, 4403, 1008, 1009):
        assert code in protocol.NO_RECONNECT
    for code in (1011, 1012, 4001, 4004, 4010):
        assert code not in protocol.NO_RECONNECT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"ping"}', Ping()),
        ('{"type":"resize","cols":80,"rows":24}', Resize(80, 24)),
        ('{"rows":24,"cols":80,"type":"resize"}', Resize(80, 24)),
        ('{"type":"resize","cols":0,"rows":100000}', Resize(1, 1000)),
        ('{"type":"resize","cols":-5,"rows":1}', Resize(1, 1)),
    ],
)
def test_valid_control_messages(text: str, expected: object) -> None:
    assert parse_control(text) == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[" * 100_000, 1009),
        ("[" * 1000, 1008),  # RecursionError inside json, under the size limit
        ("{" * 1000, 1008),
        ("é" * 600, 1009),  # 600 characters, 1,200 bytes
        ("", 1008),
        ("\ud800", 1008),
        ('{"type":"resize","cols":1e400,"rows":1}', 1008),
        ('{"type":"resize","cols":-Infinity,"rows":1}', 1008),
        ('{"type":"resize","cols":null,"rows":1}', 1008),
        ('{"type":"resize","cols":[80],"rows":1}', 1008),
        ('{"type":{"a":1}}', 1008),
        ("42", 1008),
        ('"ping"', 1008),
    ],
)
def test_invalid_control_messages(text: str, code: int) -> None:
    with pytest.raises(ProtocolViolation) as violation:
        parse_control(text)
    assert violation.value.code == code


def test_input_size_limit() -> None:
    protocol.check_input(b"x" * protocol.MAX_INPUT_BYTES)
    with pytest.raises(ProtocolViolation) as violation:
        protocol.check_input(b"x" * (protocol.MAX_INPUT_BYTES + 1))
    assert violation.value.code == CloseCode.MESSAGE_TOO_BIG
