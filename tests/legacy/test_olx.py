"""Courses the original exported or its README taught import here, show the same settings, and export again.

The fixtures (``olx/course``) are written from the original's formats: its
pointer-form export (``vertical/original_export.xml`` and the file
``hastexo/lab_intro.xml``), the inline form with ``<option:*>`` YAML from its
README, and the inline form with plain children.  Between them they hold
every element and attribute the original read, the platform's attributes
(a runtime with the platform's mixin fields stands for the LMS), and
attributes nothing reads.
"""

from __future__ import annotations

import json
import pathlib
from io import BytesIO
from typing import Any

import pytest
import yaml
from lxml import etree
from xblock.core import XBlockMixin
from xblock.fields import Boolean, Dict, Float, Integer, List, Scope, String
from xblock.runtime import Mixologist

from hastexo_xblock import authoring, olx

from ..test_olx import CourseFiles

pytestmark = [pytest.mark.django_db]

COURSE = pathlib.Path(__file__).parent / "olx" / "course"


class PlatformFields(XBlockMixin):
    """Some of the fields edx-platform mixes into every block (LmsBlockMixin, InheritanceMixin)."""

    visible_to_staff_only = Boolean(default=False, scope=Scope.settings)
    group_access = Dict(default={}, scope=Scope.settings)


def runtime(course: pathlib.Path | None = COURSE):
    from workbench.runtime import WorkbenchRuntime

    rt = WorkbenchRuntime("author")
    rt.id_generator.set_scenario("legacy-olx")
    rt.mixologist = Mixologist([PlatformFields])
    if course is not None:
        rt.resources_fs = CourseFiles(course)
    return rt


def hastexo_node(name: str) -> bytes:
    root = etree.parse(str(COURSE / "vertical" / name)).getroot()
    node = root if root.tag in olx.TAGS else next(child for child in root if child.tag in olx.TAGS)
    return etree.tostring(node)


def load(xml: bytes, course: pathlib.Path | None = COURSE):
    rt = runtime(course)
    return rt.get_block(rt.parse_xml_string(xml))


def values(block) -> dict[str, Any]:
    return {name: getattr(block, name) for name in olx.FIELD_NAMES}


def export(block) -> bytes:
    out = BytesIO()
    block.runtime.export_to_xml(block, out)
    return out.getvalue()


TEST_LOGIN = (
    "#!/bin/bash\nlogins=$(last training | grep -c training)\n"
    'if [ "$logins" -lt 1 ]; then\n  echo "You haven\'t logged in to the lab yet." >&2\n  exit 1\nfi\n'
)
TEST_FOOBAR = "#!/bin/bash\ntest -e foobar || { echo 'File \"foobar\" does not exist.' >&2; exit 1; }\n"

EXPECTED = {
    "original_export.xml": {
        "fields": {
            "display_name": "Getting started",
            "progress_check_label": "Check Progress",
            "show_hints_on_error": True,
            "show_feedback": False,
            "progress_check_result_heading": "Progress check result",
            "weight": 1.0,
            "stack_user_name": "training",
            "stack_protocol": "ssh",
            "stack_template_path": "hot_lab.yaml",
            "stack_key_type": "",
            "launch_timeout": None,
            "suspend_timeout": 600,
            "hook_script": "hot_script.sh",
            "delete_age": None,
            "read_only": False,
            "hidden": False,
            "enable_fullscreen": "inherit",
            "provider": "default",
            "hook_events": {"suspend": True, "resume": True, "delete": False},
            "ports": [{"name": "server1", "number": 3389}, {"name": "server2", "number": 3390}],
            "providers": [
                {"name": "default", "capacity": 20, "template": "hot_lab1_template.yaml",
                 "environment": "hot_lab1_env.yaml"},
                {"name": "cloud-b", "capacity": -1, "template": None, "environment": None},
            ],
            "tests": [TEST_LOGIN, TEST_FOOBAR],
        },
        "platform": {"visible_to_staff_only": True, "group_access": {"50": [1, 2]}},
        "unknown": {"instructions_layout_hint": "left"},
        "not_configured": ["cloud-b"],
    },
    "original_options.xml": {
        "fields": {
            "stack_user_name": "training",
            "stack_protocol": "rdp",
            "stack_key_type": "ed25519",
            "launch_timeout": 1200,
            "delete_age": 3600,
            "read_only": True,
            "hidden": False,
            "show_feedback": True,
            "show_hints_on_error": False,
            "enable_fullscreen": "true",
            "weight": 2.0,
            "progress_check_label": "Submit Answer",
            "hook_events": {"suspend": True, "resume": True, "delete": False},
            "ports": [{"name": "server1", "number": 3389}, {"name": "server2", "number": 3390}],
            "providers": [
                {"name": "default", "capacity": 20, "template": "hot_lab1_template.yaml",
                 "environment": "hot_lab1_env.yaml"},
                {"name": "cloud-b", "capacity": 30, "template": None, "environment": None},
            ],
        },
        "platform": {},
        "unknown": {
            "instructions_path": "markdown_lab.md",
            "os_auth_url": "https://os.auth.url:5000/v2.0",
            "os_tenant_name": "example.com",
        },
        "not_configured": ["cloud-b"],
    },
    "original_inline.xml": {
        "fields": {
            "display_name": "Inline",
            "stack_user_name": "training",
            "stack_template_path": "hot_lab.yaml",
            "weight": 0.5,
            "read_only": False,
            "ports": [{"name": "web", "number": 8080}],
            "providers": [{"name": "default", "capacity": -1, "template": None, "environment": None}],
            "tests": [
                "#!/bin/bash\ncurl -fs http://localhost:8080/ >/dev/null || "
                '{ echo "The web server does not answer." >&2; exit 1; }\n'
            ],
        },
        "platform": {},
        "unknown": {},
        "not_configured": [],
    },
}  # fmt: skip


@pytest.fixture(params=sorted(EXPECTED))
def fixture(request):
    return request.param, EXPECTED[request.param]


def test_imports_with_every_setting(fixture, caplog):
    name, expected = fixture
    block = load(hastexo_node(name))
    got = values(block)
    for field, value in expected["fields"].items():
        assert got[field] == value, field
    for field, value in expected["platform"].items():
        assert getattr(block, field) == value, field
    assert block.unknown_attributes == expected["unknown"]
    for provider in expected["not_configured"]:
        assert f"provider {provider} is not configured here" in caplog.text
    for attribute in expected["unknown"]:
        assert f"attribute {attribute} is not a setting" in caplog.text
    assert [block.runtime.get_block(child).content.count("lab-instructions") for child in block.children] == [1]


def test_studio_shows_the_same_settings_and_reports_the_provider(fixture):
    name, expected = fixture
    block = load(hastexo_node(name))
    again = load(export(block), course=None)
    studio = {name: block._make_field_info(name, block.fields[name])["value"] for name in block.editable_fields}
    studio_again = {name: again._make_field_info(name, again.fields[name])["value"] for name in again.editable_fields}
    assert studio_again == studio
    assert authoring.summary(values(again)) == authoring.summary(values(block))
    messages = [message.text for message in block.validate().messages]
    for provider in expected["not_configured"]:
        assert any(f"provider {provider} is not configured here" in text for text in messages), messages


def test_exports_again_without_losing_anything(fixture):
    name, expected = fixture
    block = load(hastexo_node(name))
    text = export(block)
    again = load(text, course=None)
    assert values(again) == values(block)
    for field in expected["platform"]:
        assert getattr(again, field) == getattr(block, field), field
    assert again.unknown_attributes == block.unknown_attributes
    node = etree.fromstring(text)
    for attribute, value in expected["unknown"].items():
        assert node.get(attribute) == value
    assert len(again.children) == len(block.children) == 1
    # And once more: the export of the export is the same document.
    assert export(again) == text


# --- the export keeps the forms the original read ---------------------------------------

# The original's field types: attributes and <option:*> values went through their from_string.
ORIGINAL_FIELDS = {
    "display_name": String, "weight": Float, "stack_user_name": String, "stack_protocol": String,
    "stack_template_path": String, "launch_timeout": Integer, "suspend_timeout": Integer,
    "stack_key_type": String, "hook_script": String, "delete_age": String, "read_only": Boolean,
    "hidden": Boolean, "progress_check_label": String, "show_feedback": Boolean,
    "show_hints_on_error": Boolean, "progress_check_result_heading": String, "enable_fullscreen": String,
    "hook_events": Dict, "ports": List, "providers": List, "tests": List, "provider": String,
}  # fmt: skip
ORIGINAL_CHILDREN = {"test", "port", "provider"}  # what the original read as settings in the inline form


def as_the_original_read_it(text: bytes) -> dict[str, Any]:
    """The settings the original's import got from an inline ``<hastexo>`` element (its documented rules)."""
    node = etree.fromstring(text)
    got: dict[str, Any] = {}
    for name, value in node.attrib.items():
        if name in ORIGINAL_FIELDS:
            got[name] = ORIGINAL_FIELDS[name]().from_string(value)
    for child in node:
        qname = etree.QName(child)
        if qname.namespace == olx.OPTION_NS:
            got[qname.localname] = ORIGINAL_FIELDS[qname.localname]().from_string(child.text)
        elif child.tag == "test":
            got.setdefault("tests", []).append(child.text[1:] if child.text.startswith("\n") else child.text)
        elif child.tag == "port":
            got.setdefault("ports", []).append({"name": child.get("name"), "number": int(child.get("number"))})
        elif child.tag == "provider":
            got.setdefault("providers", []).append(dict(child.attrib))
        else:
            assert child.tag != "hook_events", "the original took an inline <hook_events> for a child block"
    return got


def test_the_export_is_in_forms_the_original_read(fixture):
    name, expected = fixture
    block = load(hastexo_node(name))
    read = as_the_original_read_it(export(block))
    for field, value in expected["fields"].items():
        if field == "providers":
            names = [(p["name"], int(p["capacity"])) for p in read["providers"]]
            assert names == [(p["name"], p["capacity"]) for p in value]
        elif field in ("launch_timeout", "delete_age") and value is None:
            assert read.get(field) in (None, "")
        elif field == "delete_age":
            assert int(read[field]) == value
        else:
            assert read[field] == value, (field, read.get(field))


def test_hook_events_of_the_original_file_keep_their_meaning_after_export():
    block = load(hastexo_node("original_export.xml"))
    node = etree.fromstring(export(block))
    assert node.find("hook_events") is None  # never the element the original took for a child block
    text = node.get("hook_events")
    assert json.loads(text) == {"suspend": True, "resume": True, "delete": False}
    assert yaml.safe_load(text) == json.loads(text)  # what the original's YAML reading makes of it


# --- stackamole 9.x: the same block under its renamed tag ---------------------------------


def test_a_stackamole_block_loads_keeps_its_type_and_exports_as_stackamole():
    block = load(hastexo_node("stackamole_export.xml"))
    assert block.scope_ids.block_type == "stackamole"
    assert block.weight == 3.0 and block.hook_events == {"suspend": False, "resume": True, "delete": False}
    assert block.providers == [{"name": "default", "capacity": 10, "template": None, "environment": None}]
    assert block.tests == ['#!/bin/bash\ntest -d ~/ten || { echo "Make the directory ten." >&2; exit 1; }\n']
    text = export(block)
    assert etree.fromstring(text).tag == "stackamole"
    again = load(text, course=None)
    assert again.scope_ids.block_type == "stackamole" and values(again) == values(block)


def test_a_stackamole_pointer_reads_a_file_left_under_hastexo():
    """stackamole read its pointer files from stackamole/ or hastexo/; so does this block."""
    xml = b'<stackamole url_name="lab_intro" filename="lab_intro" stack_user_name="training"/>'
    block = load(xml)
    assert block.scope_ids.block_type == "stackamole" and len(block.tests) == 2


def test_the_fixtures_hold_every_element_and_attribute_the_original_read():
    attributes, elements = set(), set()
    for path in COURSE.rglob("*.xml"):
        for node in etree.parse(str(path)).getroot().iter():
            if not isinstance(node.tag, str):
                continue
            qname = etree.QName(node)
            tag = f"option:{qname.localname}" if qname.namespace == olx.OPTION_NS else qname.localname
            elements.add(tag)
            if tag in olx.TAGS:
                attributes |= set(node.attrib)
    scalar = set(ORIGINAL_FIELDS) - olx.STRUCTURED_FIELDS  # the structured ones were elements in the original
    assert attributes >= scalar | {"url_name", "filename", "xblock-family"}
    assert elements >= {"hastexo", "stackamole", "test", "port", "provider", "hook_events"} | {
        f"option:{name}" for name in ("providers", "ports", "tests", "hook_events")
    }
