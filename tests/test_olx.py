"""The ``<hastexo>`` OLX format: both forms, every field round-tripped, each malformed case named."""

from __future__ import annotations

import json
import pathlib
from io import BytesIO
from typing import Any

import pytest
from lxml import etree
from workbench.runtime import WorkbenchRuntime

from hastexo_xblock import olx

COURSE = pathlib.Path(__file__).parent / "olx" / "course"
KNOWN = ("default", "other")


def load_course_file(path: str) -> bytes:
    """A ``load_file`` reading course-relative paths from the fixture course."""
    return (COURSE / path).read_bytes()


def element(xml: str) -> etree._Element:
    return etree.fromstring(xml)


def parse(xml: str, **kwargs: Any) -> olx.ParsedHastexo:
    kwargs.setdefault("load_file", load_course_file)
    kwargs.setdefault("known_providers", KNOWN)
    return olx.parse(element(xml), **kwargs)


def fixture_element(name: str) -> etree._Element:
    return etree.parse(str(COURSE / "vertical" / name)).getroot()


# Every field with a non-default value that exercises the awkward cases.
ALL_FIELDS: dict[str, Any] = {
    "display_name": "Lab \"one\" <&> 'quoted'\nsecond line\ttab",
    "weight": 0.1,
    "stack_user_name": "training",
    "stack_protocol": "vnc",
    "stack_template_path": "dir/with space/tpl.yaml",
    "launch_timeout": 900,
    "suspend_timeout": 120,
    "stack_key_type": "rsa",
    "delete_age": 86400,
    "read_only": True,
    "hidden": True,
    "ports": [{"name": 'web <&">', "number": 8080}, {"number": 22}],
    "providers": [
        {"name": "other", "capacity": 0, "template": "a&b <c>.yaml", "environment": "e\n'x'"},
        {"name": "default", "capacity": -1, "template": None, "environment": None},
    ],
    "tests": [
        "#!/bin/bash\necho ']]>' > /dev/null\n",
        "\nstarts with a newline and has ]]> twice ]]>",
        "plain <xml> & stuff",
    ],
    "hook_script": "hooks/run.sh",
    "hook_events": {"suspend": True, "resume": False, "delete": True},
    "provider": "other",
    "progress_check_label": "Check <it>",
    "show_feedback": False,
    "show_hints_on_error": False,
    "progress_check_result_heading": "Résultat ✓",
    "enable_fullscreen": "false",
}


def test_all_fields_covers_every_field() -> None:
    assert set(ALL_FIELDS) == olx.FIELD_NAMES


def roundtrip(values: dict[str, Any]) -> dict[str, Any]:
    """Export, serialize, parse the text back."""
    text = etree.tostring(olx.export(values))
    return olx.parse(etree.fromstring(text), known_providers=KNOWN).fields


def test_every_field_round_trips() -> None:
    assert roundtrip(ALL_FIELDS) == ALL_FIELDS


@pytest.mark.parametrize(
    "tests",
    [
        ["    indented as a whole\n    second"],  # dedent would change it
        ["a\n   \nb"],  # a whitespace-only line
        ["windows\r\nline ends"],
        ["emoji 😀 and control \x01 char"],
        ["ok", "  mixed\n  with an indented one"],
    ],
)
def test_awkward_scripts_round_trip_exactly(tests: list[str]) -> None:
    assert roundtrip({**ALL_FIELDS, "tests": tests})["tests"] == tests


def test_unset_values_export_as_empty_and_stay_unset() -> None:
    fields = roundtrip({"launch_timeout": None, "tests": [], "ports": [], "hook_events": {}})
    assert fields == {}


def test_export_is_deterministic_and_writes_every_field() -> None:
    node = olx.export(ALL_FIELDS, [element("<html_demo><p>x</p></html_demo>")])
    assert node.tag == "hastexo"
    assert list(node.attrib) == sorted(olx.FIELD_NAMES)
    # Settings are attributes only: the one child element is the child block (see the paste tests).
    assert [child.tag for child in node] == ["html_demo"]
    assert json.loads(node.get("tests")) == ALL_FIELDS["tests"]
    text = etree.tostring(node)
    assert text == etree.tostring(olx.export(ALL_FIELDS, [element("<html_demo><p>x</p></html_demo>")]))


def test_structured_attributes_are_read_like_option_elements() -> None:
    fields = parse(
        '<hastexo ports=\'[{"name": "web", "number": 8080}]\' tests="[\'test -f x\']"'
        ' hook_events="{suspend: true}" providers=""/>'
    ).fields
    assert fields == {
        "ports": [{"name": "web", "number": 8080}],
        "tests": ["test -f x"],
        "hook_events": {"suspend": True, "resume": False, "delete": False},  # a mapping: left out is false
    }
    assert parse("<hastexo ports='[]' tests=''/>").fields == {"ports": []}


def test_inline_fixture() -> None:
    parsed = olx.parse(fixture_element("inline.xml"), known_providers=KNOWN)
    fields = parsed.fields
    assert fields["display_name"] == "Inline lab" and fields["weight"] == 2.5
    assert fields["stack_protocol"] == "rdp" and fields["stack_key_type"] == "ed25519"
    assert fields["launch_timeout"] == 900 and fields["delete_age"] == 3600
    assert "suspend_timeout" not in fields  # "" is unset
    assert fields["read_only"] is True and fields["hidden"] is False and fields["show_feedback"] is False
    assert fields["enable_fullscreen"] == "false"  # the original's boolean spelling
    assert fields["tests"] == [
        "#!/bin/bash\n# a comment with <angle> & ampersand\ntest -f /tmp/done\n",
        "grep -q ready /etc/motd\n",
    ]
    assert fields["ports"] == [{"name": "ssh", "number": 22}, {"name": "web", "number": 8080}]
    assert fields["providers"] == [
        {"name": "default", "capacity": 3, "template": "big.yaml", "environment": "env.yaml"},
        {"name": "default", "capacity": -1, "template": None, "environment": None},
    ]
    assert fields["hook_events"] == {"suspend": True, "resume": False, "delete": True}
    assert [child.tag for child in parsed.children] == ["html_demo", "html_demo"]
    assert parsed.source is None


def test_pointer_fixture_is_read_and_attributes_merge() -> None:
    parsed = olx.parse(fixture_element("pointer.xml"), load_file=load_course_file, known_providers=KNOWN)
    assert parsed.source == "hastexo/labs/pointer_lab.xml"
    fields = parsed.fields
    assert fields["display_name"] == "Overridden title"  # the pointer's attribute wins
    assert fields["hidden"] is True
    assert fields["stack_user_name"] == "training" and fields["stack_protocol"] == "vnc"  # from the file
    assert fields["providers"] == [
        {"name": "default", "capacity": 5, "template": "from-option.yaml", "environment": None},
        {"name": "default", "capacity": -1, "template": None, "environment": None},
    ]
    assert fields["ports"] == [{"name": "vnc", "number": 5901}]
    assert fields["hook_events"] == {"suspend": True, "resume": False, "delete": False}  # left out: false
    assert fields["tests"] == ['#!/bin/bash\necho "yaml test"\n']
    assert [child.tag for child in parsed.children] == ["html_demo"]


def test_pointer_path() -> None:
    assert olx.pointer_path(element('<hastexo url_name="lab1" filename="lab1"/>')) == "hastexo/lab1.xml"
    assert olx.pointer_path(element('<hastexo url_name="a/b" filename="c.xml"/>')) == "hastexo/a/c.xml"


@pytest.mark.parametrize(
    ("xml", "names"),
    [
        ('<hastexo url_name="x" filename="../../etc/passwd"/>', ["filename", "outside"]),
        ('<hastexo url_name="x" filename="missing"/>', ["filename", "cannot read", "hastexo/missing.xml"]),
    ],
)
def test_bad_pointers(xml: str, names: list[str]) -> None:
    with pytest.raises(olx.OLXError) as caught:
        parse(xml)
    for name in names:
        assert name in str(caught.value)


def test_pointer_without_a_loader() -> None:
    with pytest.raises(olx.OLXError, match="no course directory"):
        parse('<hastexo url_name="lab1" filename="lab1"/>', load_file=None)


def test_pointer_file_must_hold_a_hastexo_element() -> None:
    with pytest.raises(olx.OLXError, match="root element"):
        parse('<hastexo filename="x"/>', load_file=lambda path: "<problem/>")
    with pytest.raises(olx.OLXError, match="not well-formed"):
        parse('<hastexo filename="x"/>', load_file=lambda path: "<hastexo>")


OPT = 'xmlns:option="http://code.edx.org/xblock/option"'


@pytest.mark.parametrize(
    ("xml", "names"),
    [
        ('<hastexo><port name="web"/></hastexo>', ["<port>", '"number"', "needs a number"]),
        ('<hastexo><port number="http"/></hastexo>', ["<port>", '"number"', "whole number"]),
        ('<hastexo><port number="70000"/></hastexo>', ["<port>", "1–65535"]),
        ('<hastexo><port number="0"/></hastexo>', ["<port>", "1–65535"]),
        ('<hastexo><provider name="default" capacity="lots"/></hastexo>', ["<provider>", '"capacity"', "'lots'"]),
        ('<hastexo><provider name="default" capacity="-2"/></hastexo>', ["<provider>", '"capacity"', "-1"]),
        ("<hastexo><provider capacity='1'/></hastexo>", ["<provider>", "needs a name"]),
        ('<hastexo><provider name="default" colour="red"/></hastexo>', ["<provider>", "unknown key colour"]),
        ("<hastexo><test/></hastexo>", ["<test>", "empty"]),
        ("<hastexo><test>   \n  </test></hastexo>", ["<test>", "empty"]),
        ('<hastexo stack_protocol="telnet"/>', ["<hastexo>", '"stack_protocol"', "'telnet'"]),
        ('<hastexo stack_key_type="dsa"/>', ['"stack_key_type"', "'dsa'"]),
        ('<hastexo enable_fullscreen="maybe"/>', ['"enable_fullscreen"', "'maybe'"]),
        ('<hastexo launch_timeout="soon"/>', ['"launch_timeout"', "whole number"]),
        ('<hastexo weight="heavy"/>', ['"weight"', "number"]),
        ('<hastexo><hook_events suspend="maybe"/></hastexo>', ["<hook_events>", '"suspend"']),
        ('<hastexo hidden="maybe"/>', ['"hidden"', "true or false"]),
        ('<hastexo><hook_events reboot="true"/></hastexo>', ["<hook_events>", "reboot"]),
        (f"<hastexo {OPT}><option:ports>[{{name: web</option:ports></hastexo>", ["<option:ports>", "YAML"]),
        (f"<hastexo {OPT}><option:ports>{{a: 1}}</option:ports></hastexo>", ["<option:ports>", "list"]),
        (f"<hastexo {OPT}><option:ports>[{{name: web}}]</option:ports></hastexo>", ["<option:ports>", "number"]),
        (f"<hastexo {OPT}><option:tests>[1]</option:tests></hastexo>", ["<option:tests>", "non-empty script"]),
        (f"<hastexo {OPT}><option:hook_events>[]</option:hook_events></hastexo>", ["<option:hook_events>"]),
        (
            f'<hastexo {OPT}><option:ports>[]</option:ports><port number="1"/></hastexo>',
            ["<port>", "already given by <option:ports>"],
        ),
        ("<hastexo><hook_events/><hook_events/></hastexo>", ["<hook_events>", "already given"]),
        ('<hastexo ports=\'[{"name": "w"}]\'/>', ["<hastexo>", "needs a number"]),
        ("<hastexo tests='{a: 1}'/>", ["<hastexo>", '"tests"', "list"]),
        ("<hastexo hook_events='[{x'/>", ["<hastexo>", '"hook_events"', "not valid JSON or YAML"]),
        (
            """<hastexo tests='["a"]'><test>b</test></hastexo>""",
            ["<test>", "already given by the tests attribute of <hastexo>"],
        ),
        ("<hastexo><test>a<b/></test></hastexo>", ["<test>", "not elements"]),
    ],
)
def test_malformed_olx_names_the_element_and_the_problem(xml: str, names: list[str]) -> None:
    with pytest.raises(olx.OLXError) as caught:
        parse(xml)
    message = str(caught.value)
    for name in names:
        assert name in message, message


def test_error_in_a_pointer_file_names_the_file() -> None:
    with pytest.raises(olx.OLXError, match=r"<port> \(line 1 of hastexo/lab\.xml\)"):
        parse('<hastexo filename="lab"/>', load_file=lambda path: '<hastexo><port name="x"/></hastexo>')


def test_provider_names_are_only_checked_when_known_providers_are_given() -> None:
    fields = olx.parse(element('<hastexo><provider name="anything"/></hastexo>')).fields
    assert fields["providers"][0]["name"] == "anything"


@pytest.mark.parametrize(
    "xml",
    [
        '<hastexo><provider name="nowhere"/></hastexo>',
        f"<hastexo {OPT}><option:providers>[{{name: nowhere}}]</option:providers></hastexo>",
    ],
)
def test_a_provider_not_configured_here_imports_with_a_warning(xml: str) -> None:
    parsed = parse(xml)
    assert parsed.fields["providers"][0]["name"] == "nowhere"
    [warning] = parsed.warnings
    assert "provider nowhere is not configured here" in warning
    assert "<provider>" in warning or "<option:providers>" in warning


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, True) for t in ("true", "True", "TRUE", "yes", "Yes", "on", "ON", "1", "2")]
    + [(f, False) for f in ("false", "False", "no", "NO", "off", "Off", "0")],
)
def test_booleans_mean_what_they_meant_in_the_original(text: str, expected: bool) -> None:
    assert parse(f'<hastexo read_only="{text}"/>').fields["read_only"] is expected


def test_hook_events_element_and_mapping_read_as_the_original_did() -> None:
    # The element: an event left out is true; values as Python's strtobool read them.
    assert parse('<hastexo><hook_events suspend="n"/></hastexo>').fields["hook_events"] == {
        "suspend": False,
        "resume": True,
        "delete": True,
    }
    assert parse("<hastexo><hook_events/></hastexo>").fields["hook_events"] == dict.fromkeys(olx.HOOK_EVENTS, True)
    # The mapping: an event left out is false; an empty one runs no hook.
    mapping = f"<hastexo {OPT}><option:hook_events>{{resume: yes}}</option:hook_events></hastexo>"
    assert parse(mapping).fields["hook_events"] == {"suspend": False, "resume": True, "delete": False}
    assert parse(f"<hastexo {OPT}><option:hook_events>{{}}</option:hook_events></hastexo>").fields["hook_events"] == {}


def test_unknown_attributes_and_options_are_handed_back_not_refused() -> None:
    parsed = parse(
        f'<hastexo {OPT} colour="red" visible_to_staff_only="true"><option:due>2030-01-01</option:due></hastexo>'
    )
    assert parsed.fields == {}
    assert parsed.unknown_attributes == {"colour": "red", "visible_to_staff_only": "true", "due": "2030-01-01"}


def test_bookkeeping_attributes_and_comments_are_ignored() -> None:
    parsed = parse('<hastexo url_name="u" xblock-family="xblock.v1"><!-- note --></hastexo>')
    assert parsed.fields == {} and parsed.children == []


def test_unknown_children_are_kept_as_child_blocks() -> None:
    parsed = parse("<hastexo><video src='x'/><problem/><html>hi</html></hastexo>")
    assert [child.tag for child in parsed.children] == ["video", "problem", "html"]


# --- through the block on the workbench runtime ------------------------------------


class CourseFiles:
    """The part of Open edX's import ``resources_fs`` (a PyFilesystem) that olx.loader_for uses."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root.resolve()

    def open(self, path: str, mode: str = "r"):
        full = (self.root / path.lstrip("/")).resolve()
        assert full.is_relative_to(self.root), path
        return open(full, mode)


def make_runtime(course: pathlib.Path | None = COURSE) -> WorkbenchRuntime:
    runtime = WorkbenchRuntime("student_1")
    runtime.id_generator.set_scenario("olx-tests")
    if course is not None:
        runtime.resources_fs = CourseFiles(course)  # what Open edX's import runtime offers
    return runtime


def block_from(runtime: WorkbenchRuntime, xml: str | bytes):
    return runtime.get_block(runtime.parse_xml_string(xml))


def field_values(block) -> dict[str, Any]:
    return {name: getattr(block, name) for name in olx.FIELD_NAMES}


def child_html(block) -> list[str]:
    return [block.runtime.get_block(child).content for child in block.children]


def child_summary(block) -> list[tuple[str, str | None, str]]:
    """(tag, class, text) per child: html_demo's own export re-indents and adds namespaces."""
    summary = []
    for html in child_html(block):
        node = etree.fromstring(html.strip())
        summary.append((etree.QName(node).localname, node.get("class"), "".join(node.itertext())))
    return summary


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["inline.xml", "pointer.xml"])
def test_block_export_and_reimport_keeps_every_field_and_the_children(name: str) -> None:
    runtime = make_runtime()
    block = block_from(runtime, (COURSE / "vertical" / name).read_bytes())
    assert block.children and all("<p" in html for html in child_html(block))
    out = BytesIO()
    runtime.export_to_xml(block, out)
    again = block_from(make_runtime(course=None), out.getvalue())
    assert field_values(again) == field_values(block)
    assert child_summary(again) == child_summary(block)


@pytest.mark.django_db
def test_block_round_trips_every_field_through_the_runtime() -> None:
    runtime = make_runtime(course=None)
    values = {**ALL_FIELDS, "providers": [{**p, "name": "default"} for p in ALL_FIELDS["providers"]]}
    block = block_from(runtime, "<hastexo/>")
    for name, value in values.items():
        setattr(block, name, value)
    out = BytesIO()
    runtime.export_to_xml(block, out)
    assert field_values(block_from(make_runtime(course=None), out.getvalue())) == values


@pytest.mark.django_db
def test_block_pointer_fields_come_from_the_file() -> None:
    block = block_from(make_runtime(), (COURSE / "vertical" / "pointer.xml").read_bytes())
    assert block.display_name == "Overridden title" and block.stack_protocol == "vnc"
    assert block.ports == [{"name": "vnc", "number": 5901}]
    assert child_summary(block) == [("p", "pointer-instructions", "Instructions from the file.")]


@pytest.mark.django_db
def test_block_imports_a_provider_not_configured_here_and_says_so(caplog) -> None:
    block = block_from(make_runtime(), '<hastexo><provider name="not-a-provider"/></hastexo>')
    assert block.providers[0]["name"] == "not-a-provider"
    assert "provider not-a-provider is not configured here" in caplog.text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[" * 50_000 + "]" * 50_000, "nested deeper than 32 levels"),
        ("- " * 5000 + "x", "nested deeper than 32 levels"),
        ("a: &a [{number: 22}]\nb: *a", "aliases"),
    ],
    ids=["json-50000-deep", "yaml-5000-deep", "yaml-alias"],
)
def test_a_value_nested_too_deep_or_aliased_is_an_olx_error_not_a_crash(value, problem):
    node = etree.Element("hastexo")
    node.set("ports", value)
    with pytest.raises(olx.OLXError, match=problem):
        olx.parse(node)
