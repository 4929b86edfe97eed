"""Strict inputs: every JSON handler refuses a malformed or mistyped body with a 4xx, and changes nothing.

The fuzz cases of issue 10, through the workbench runtime's ``block.handle``
with raw bodies; after each refusal the learner's stack, their checks and
every field of the block (in memory and as stored) are as they were.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from django.forms.models import model_to_dict
from webob import Request

from hastexo_xblock import inputs
from hastexo_xblock.block import HastexoXBlock
from hastexo_xblock.models import Check, Stack

from .test_block import XML, bring_up, call, make_block

pytestmark = [pytest.mark.django_db(transaction=True)]

#: The block's handler that takes no JSON body (a page).
NOT_JSON = {"launch_new_window"}
JSON_HANDLERS = sorted(
    name
    for name in dir(HastexoXBlock)
    if getattr(getattr(HastexoXBlock, name), "_is_xblock_handler", False) and name not in NOT_JSON
)
DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000

# (handler, raw body): each must be refused with a 4xx and change nothing.
CASES = [
    *[(name, DEEP) for name in JSON_HANDLERS],
    *[(name, DEEP_OBJECT) for name in JSON_HANDLERS],
    *[(name, b"[" * 40 + b"]" * 40) for name in JSON_HANDLERS],  # small, but deeper than the limit
    *[(name, b"\xff\xfe{}") for name in JSON_HANDLERS],  # not UTF-8
    *[(name, b"{") for name in JSON_HANDLERS],
    ("get_user_stack_status", b'{"reset": {"a": 1}}'),
    ("get_user_stack_status", b'{"initialize": "false"}'),
    ("get_user_stack_status", b'{"initialize": 1}'),
    ("get_user_stack_status", b'{"reset": "true", "initialize": true}'),
    ("get_user_stack_status", b'{"initialize": true, "shutdown": true}'),
    ("get_user_stack_status", b"[true]"),
    ("get_user_stack_status", b"null"),
    ("set_port", b'{"port": 1e309}'),
    ("set_port", b'{"port": -1e309}'),
    ("set_port", b'{"port": NaN}'),
    ("set_port", b'{"port": Infinity}'),
    ("set_port", b'{"port": 1' + b"0" * 5000 + b"}"),
    ("set_port", b'{"port": "8080"}'),
    ("set_port", b'{"port": true}'),
    ("set_port", b'{"port": 8080.5}'),
    ("set_port", b'{"port": [8080]}'),
    ("set_port", b'{"port": 99999}'),
    ("set_port", b'{"port": 22}'),  # a number, but not one the lab offers
    ("set_port", b"{}"),
    ("set_port", b'"8080"'),
    ("keepalive", b'{"forever": true}'),
    ("check_progress", b'{"tests": ["rm -rf ~"]}'),
    ("check_status", b"[]"),
    ("get_check_status", b'{"check_id": 1}'),
    ("submit_studio_edits", b"null"),
    ("submit_studio_edits", b"[]"),
    ("submit_studio_edits", b'"values"'),
    ("submit_studio_edits", b"5"),
    ("submit_studio_edits", b'{"values": []}'),
    ("submit_studio_edits", b'{"values": "display_name"}'),
    ("submit_studio_edits", b'{"values": {}, "defaults": "ports"}'),
    ("submit_studio_edits", b'{"values": {}, "defaults": [5]}'),
    ("submit_studio_edits", b'{"values": {}, "defaults": ["no_such_field"]}'),
    ("submit_studio_edits", b'{"values": {}, "extra": 1}'),
    ("submit_studio_edits", b'{"providers": 5}'),
    ("submit_studio_edits", b'{"values": {"providers": 5}}'),
    ("submit_studio_edits", b'{"values": {"providers": "5"}}'),
    ("submit_studio_edits", b'{"values": {"providers": {"name": "x"}}}'),
    ("submit_studio_edits", b'{"values": {"hook_events": "- suspend"}}'),
    ("submit_studio_edits", b'{"values": {"launch_timeout": "abc"}}'),
    ("submit_studio_edits", b'{"values": {"launch_timeout": 1.5}}'),
    ("submit_studio_edits", b'{"values": {"launch_timeout": true}}'),
    ("submit_studio_edits", b'{"values": {"weight": 1e309}}'),
    ("submit_studio_edits", b'{"values": {"weight": "heavy"}}'),
    ("submit_studio_edits", b'{"values": {"read_only": "true"}}'),
    ("submit_studio_edits", b'{"values": {"display_name": 5}}'),
    ("submit_studio_edits", b'{"values": {"display_name": null}}'),
    ("submit_studio_edits", b'{"values": {"stack_protocol": ["ssh"]}}'),
    ("submit_studio_edits", b'{"values": {"no_such_field": 1}}'),
    ("submit_studio_edits", b'{"values": {"port": 8080}}'),  # the learner's field, not an author's
    ("submit_studio_edits", b'{"values": {"provider": "x"}}'),  # not in Studio's form
    ("submit_studio_edits", b'{"values": {"display_name": "New", "tests": "[unclosed"}}'),
    # YAML text whose nesting would recurse PyYAML's composer to a RecursionError, and an alias bomb.
    ("submit_studio_edits", json.dumps({"values": {"ports": "[" * 5000 + "]" * 5000}}).encode()),
    ("submit_studio_edits", json.dumps({"values": {"tests": "- " * 5000 + "x"}}).encode()),
    ("submit_studio_edits", json.dumps({"values": {"ports": "a: &a [1, 2]\nb: [*a, *a, *a]"}}).encode()),
    ("submit_studio_edits", b'{"values": {"display_name": "New", "ports": "- {number: 99999}"}}'),
]


def raw_call(block, handler: str, body: bytes, method: str = "POST"):
    request = Request.blank("/", method=method, body=body, headers={"Content-Type": "application/json"})
    response = block.handle(handler, request)
    return response.status_code, response.body


def state(block) -> dict:
    """Everything a handler could change: the learner's stacks and checks, and every field of the block."""
    stored = block.runtime.get_block(block.scope_ids.usage_id)
    return {
        "stacks": [model_to_dict(stack) for stack in Stack.objects.order_by("pk")],
        "checks": [model_to_dict(check) for check in Check.objects.order_by("pk")],
        "fields": {name: field.read_from(block) for name, field in block.fields.items()},
        "stored": {name: field.read_from(stored) for name, field in stored.fields.items()},
    }


@pytest.fixture
def running(sent):
    """A learner's block whose lab is running, with a port chosen and a check started."""
    block = make_block("fuzzed", XML.replace("<option:ports", "<test>true</test><option:ports"))
    assert call(block, "get_user_stack_status", {"initialize": True})[0] == 200
    bring_up(Stack.objects.get().pk)
    assert call(block, "set_port", {"port": 8080}) == (200, {"port": 8080})
    assert call(block, "check_progress", {})[0] == 200 and Check.objects.count() == 1
    return block


@pytest.fixture
def sent(monkeypatch):
    """Record launches and checks instead of sending them to a broker."""
    calls = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *a, **k: calls.append((a, k)))
    return calls


def test_every_json_handler_reads_its_body_strictly():
    assert set(JSON_HANDLERS) >= {"get_user_stack_status", "set_port", "submit_studio_edits", "get_check_status"}
    for name in JSON_HANDLERS:
        assert getattr(getattr(HastexoXBlock, name), "strict_json", False), name


@pytest.mark.parametrize(("handler", "body"), CASES, ids=lambda v: v if isinstance(v, str) else repr(v[:40]))
def test_malformed_input_is_a_4xx_and_changes_nothing(running, sent, handler, body):
    before, launches = state(running), len(sent)
    status, answer = raw_call(running, handler, body)
    assert 400 <= status < 500, (status, answer[:300])
    assert "error" in json.loads(answer)  # a JSON answer that says what is wrong
    assert state(running) == before
    assert len(sent) == launches  # no launch, reset or check was sent


@pytest.mark.parametrize("handler", JSON_HANDLERS)
def test_a_get_is_refused_with_405(running, handler):
    status, _answer = raw_call(running, handler, b"", method="GET")
    assert status == 405


def test_the_flags_still_work_as_json_booleans(running, sent):
    assert call(running, "get_user_stack_status", {"initialize": False, "reset": False})[0] == 200
    assert call(running, "get_user_stack_status", {})[0] == 200
    assert call(running, "set_port", {"port": None}) == (200, {"port": None})
    assert call(running, "set_port", {"port": 8080.0}) == (200, {"port": 8080})
    launches = len(sent)
    assert call(running, "get_user_stack_status", {"reset": True})[0] == 200
    assert len(sent) == launches + 1 and sent[-1][1]["reset"] is True


def test_depth_limit_is_exact_and_strings_do_not_count():
    limit = inputs.MAX_DEPTH
    assert inputs.loads(b"[" * limit + b"]" * limit) is not None
    with pytest.raises(inputs.InputError):
        inputs.loads(b"[" * (limit + 1) + b"]" * (limit + 1))
    assert inputs.loads(json.dumps({"text": "[[[[" * 1000 + '\\"{{'}).encode()) == {"text": "[[[[" * 1000 + '\\"{{'}


@pytest.mark.parametrize(
    "body",
    [
        b'"' + b'\\"' * (inputs.STUDIO_BODY_LIMIT // 2 - 1),  # a string that never closes, full of quotes
        b'"' * inputs.STUDIO_BODY_LIMIT,
        b"[" + b"[]," * (inputs.STUDIO_BODY_LIMIT // 3 - 1) + b"[]]",  # wide, not deep: accepted
        b'"' + b"[" * (inputs.STUDIO_BODY_LIMIT - 2) + b'"',  # brackets in a string do not count
    ],
    ids=["unclosed-escaped-quotes", "quotes", "wide", "brackets-in-a-string"],
)
def test_the_depth_scan_is_linear(body):
    """A scan that rescanned from every quote took minutes on the first of these (1 MiB)."""
    started = time.perf_counter()
    with contextlib.suppress(inputs.InputError):
        inputs.loads(body, max_bytes=inputs.STUDIO_BODY_LIMIT)
    assert time.perf_counter() - started < 2.0


def test_a_large_body_is_refused_quickly():
    body = b"[" * inputs.STUDIO_BODY_LIMIT
    started = time.perf_counter()
    with pytest.raises(inputs.InputError) as refused:
        inputs.loads(body, max_bytes=inputs.STUDIO_BODY_LIMIT)
    assert refused.value.status == 400 and time.perf_counter() - started < 2.0
    with pytest.raises(inputs.InputError) as refused:
        inputs.loads(body + b"]")
    assert refused.value.status == 413
