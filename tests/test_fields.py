"""One definition of each thing: the lab's fields (fields.py), offered ports, the pinned SSH login, stack names.

The block, the OLX format and Studio's checks are built from ``fields.FIELDS``;
the last test reads the package's source for second definitions, so that one
written again by hand fails here.
"""

from __future__ import annotations

import pathlib
import re

import pytest
from xblock.fields import Boolean, Dict, Float, Integer, List, Scope, String

from hastexo_xblock import authoring, fields, olx
from hastexo_xblock.block import HastexoXBlock

PACKAGE = pathlib.Path(fields.__file__).parent
CLASSES = {"text": String, "choice": String, "int": Integer, "float": Float, "bool": Boolean, "list": List}


@pytest.mark.parametrize("spec", fields.FIELDS, ids=lambda spec: spec.name)
def test_the_block_field_is_the_definition(spec):
    field = HastexoXBlock.fields[spec.name]
    assert type(field) is CLASSES.get(spec.kind, Dict)
    assert (field.default, field.display_name, field.help) == (spec.default, spec.label, spec.help)
    assert field.scope == (Scope.content if spec.content else Scope.settings)
    if spec.kind != "bool":  # a Boolean's values are XBlock's own True/False
        assert (field.values or None) == (list(spec.choices) or None)


def test_studio_olx_and_authoring_read_the_same_definition():
    assert HastexoXBlock.editable_fields == fields.STUDIO_FIELDS
    assert olx.FIELD_NAMES == fields.NAMES == set(authoring.FIELD_LABELS)
    assert olx.SCALAR_FIELDS | olx.STRUCTURED_FIELDS == fields.NAMES
    assert set(authoring.YAML_FIELDS) == olx.STRUCTURED_FIELDS == fields.STRUCTURED
    assert olx.PLAIN_CHILDREN == {
        "provider": "providers",
        "port": "ports",
        "test": "tests",
        "hook_events": "hook_events",
    }


@pytest.mark.parametrize(
    ("number", "offered"),
    [(None, True), (8080, True), (22, False), (True, False), ("8080", False), (8080.0, False), (70000, False)],
)
def test_one_offered_port_rule(number, offered):
    entries = [{"name": "web", "number": 8080}, {"name": "broken", "number": 70000}, "junk", {"name": "none"}]
    assert fields.port_offered(number, entries) is offered
    assert fields.offered_entries(entries) == [{"name": "web", "number": 8080}]


def occurrences(pattern: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found += [
            f"{path.relative_to(PACKAGE)}:{text.count(chr(10), 0, m.start()) + 1}" for m in re.finditer(pattern, text)
        ]
    return found


@pytest.mark.parametrize(
    ("pattern", "where"),
    [
        (r"class HostKeyMismatch\b", "ssh.py"),
        (r"class SSHTarget\b", "ssh.py"),
        (r"asyncssh\.connect\((?!\.\.\.)", "ssh.py"),  # not the docstring of transport.py
        (r"def offered_ports\(", "fields.py"),
        (r"def port_offered\(", "fields.py"),
        (r"re\.compile\(r\"[\\^A]+\[A-Za-z\]\[A-Za-z0-9_\.-\]", "names.py"),
        (r"LabField\(\s*\"launch_timeout\"", "fields.py"),
        (r"display_name=_\(\"Launch timeout\"\)", None),
    ],
)
def test_no_second_definition(pattern, where):
    found = occurrences(pattern)
    if where is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(where), found


def test_studio_checks_do_not_reach_into_the_olx_module():
    source = (PACKAGE / "authoring.py").read_text(encoding="utf-8")
    assert "olx" not in re.sub(r'"""[\s\S]*?"""', "", source)
