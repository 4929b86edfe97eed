"""Studio authoring: validation rules, YAML fields, child types and the author view template."""

from __future__ import annotations

from typing import Any

import pytest
from xblock.utils.resources import ResourceLoader

from hastexo_xblock import authoring
from hastexo_xblock.authoring import AuthoringError, FieldProblem

GOOD: dict[str, Any] = {
    "display_name": "Linux basics",
    "weight": 1.5,
    "stack_user_name": "learner",
    "stack_protocol": "ssh",
    "stack_template_path": "lab.yaml",
    "launch_timeout": 900,
    "suspend_timeout": None,
    "delete_age": "",
    "stack_key_type": "ed25519",
    "ports": [{"name": "ssh", "number": 22}, {"name": "web", "number": "8080"}],
    "providers": [{"name": "fake1", "capacity": 5}, {"name": "fake2", "capacity": None, "template": "other.yaml"}],
    "tests": ["test -f /tmp/done\n"],
    "hook_script": "hooks/suspend.sh",
    "hook_events": {"suspend": True, "resume": False},
    "enable_fullscreen": "inherit",
}
KNOWN = ("fake1", "fake2")


def problems(known=KNOWN, **changes: Any) -> list[FieldProblem]:
    return authoring.validate({**GOOD, **changes}, known)


def only(field: str, *phrases: str, known=KNOWN, **changes: Any) -> FieldProblem:
    """Assert that ``changes`` give exactly one problem, on ``field``, whose message holds ``phrases``."""
    found = problems(known, **changes)
    assert [p.field for p in found] == [field], found
    for phrase in phrases:
        assert phrase in found[0].message, found[0].message
    return found[0]


def test_good_values_have_no_problems() -> None:
    assert problems() == []
    assert authoring.validate(GOOD, None) == []


def test_missing_keys_count_as_defaults() -> None:
    found = authoring.validate({}, None)
    assert {p.field for p in found} == {"stack_template_path", "stack_user_name"}
    assert authoring.validate({"stack_template_path": "t.yaml", "stack_user_name": "u"}, None) == []


def test_field_problem_is_frozen() -> None:
    problem = FieldProblem("weight", "Weight: no")
    with pytest.raises(AttributeError):
        problem.field = "other"  # type: ignore[misc]


@pytest.mark.parametrize("weight", [0, 0.0, 2, "3.5"])
def test_weight_good(weight: Any) -> None:
    assert problems(weight=weight) == []


@pytest.mark.parametrize(
    ("weight", "phrase"),
    [(-1, "must be 0 or more, got -1"), ("abc", "expected a number, got 'abc'"), (None, "expected a number"),
     (True, "expected a finite number"), (float("nan"), "finite")],
)  # fmt: skip
def test_weight_bad(weight: Any, phrase: str) -> None:
    only("weight", "Weight: ", phrase, weight=weight)


@pytest.mark.parametrize("field", ["launch_timeout", "suspend_timeout", "delete_age"])
@pytest.mark.parametrize("value", [None, "", 1, 3600, "120"])
def test_timeouts_good(field: str, value: Any) -> None:
    assert problems(**{field: value}) == []


@pytest.mark.parametrize("field", ["launch_timeout", "suspend_timeout", "delete_age"])
@pytest.mark.parametrize(
    ("value", "phrase"),
    [(0, "positive number of seconds"), (-5, "got -5"), ("abc", "whole number, got 'abc'"), (1.5, "whole number"),
     (True, "whole number")],
)  # fmt: skip
def test_timeouts_bad(field: str, value: Any, phrase: str) -> None:
    only(field, authoring.FIELD_LABELS[field] + ": ", phrase, **{field: value})


def test_template_path_required() -> None:
    only("stack_template_path", "Template path: ", "needs a template", stack_template_path="")
    only("stack_template_path", "needs a template", stack_template_path="   ")


def test_template_path_not_needed_when_every_provider_has_a_template() -> None:
    providers = [{"name": "fake1", "template": "a.yaml"}, {"name": "fake2", "template": "b.yaml"}]
    assert problems(stack_template_path="", providers=providers) == []
    one_without = [{"name": "fake1", "template": "a.yaml"}, {"name": "fake2"}]
    only("stack_template_path", "every provider", stack_template_path="", providers=one_without)
    only("stack_template_path", "needs a template", stack_template_path="", providers=[])


def test_user_name_required() -> None:
    only("stack_user_name", "Lab user name: ", "SSH", stack_user_name="")
    only("stack_user_name", "SSH", stack_user_name=" ")
    only("stack_user_name", "SSH", stack_user_name=None)


@pytest.mark.parametrize(
    ("field", "good", "bad", "phrase"),
    [
        ("stack_protocol", ["ssh", "rdp", "vnc"], ["telnet", "", None], "expected one of ssh, rdp, vnc"),
        ("stack_key_type", ["", "rsa", "ed25519"], ["dsa", None], "expected one of (empty), rsa, ed25519"),
        ("enable_fullscreen", ["true", "false", "inherit"], ["yes", True], "expected one of true, false, inherit"),
    ],
)
def test_choices(field: str, good: list[Any], bad: list[Any], phrase: str) -> None:
    for value in good:
        assert problems(**{field: value}) == [], value
    for value in bad:
        only(field, authoring.FIELD_LABELS[field] + ": ", phrase, f"got {value!r}", **{field: value})


def test_ports_good() -> None:
    assert problems(ports=[]) == []
    assert problems(ports=None) == []
    assert problems(ports=[{"name": "a", "number": 1}, {"name": "b", "number": 65535}]) == []
    assert problems(stack_protocol="rdp", ports=[{"name": "rdp", "number": 3389}]) == []


@pytest.mark.parametrize(
    ("ports", "phrases"),
    [
        ("22", ["Ports: ", "expected a list"]),
        ([{"name": "ssh", "number": 22}, "8080"], ["Ports, item 2: ", "expected a mapping"]),
        ([{"name": "ssh", "number": 22}, {"name": "x", "number": "abc"}],
         ["Ports, item 2, number: ", "expected a whole number, got 'abc'"]),
        ([{"name": "x", "number": 0}], ["Ports, item 1, number: ", "1–65535, got 0"]),
        ([{"name": "x", "number": 65536}], ["1–65535, got 65536"]),
        ([{"name": "x"}], ["item 1, number: ", "needs a number"]),
        ([{"number": 22}], ["Ports, item 1: ", "needs a name"]),
        ([{"name": " ", "number": 22}], ["needs a name"]),
        ([{"name": "x", "number": 22, "host": "h"}], ["unknown key host"]),
        ([{"name": "a", "number": 22}, {"name": "b", "number": "22"}],
         ["Ports, item 2: ", "port number 22 is already used by item 1"]),
    ],
)  # fmt: skip
def test_ports_bad(ports: Any, phrases: list[str]) -> None:
    only("ports", *phrases, ports=ports)


def test_ports_every_problem_is_reported() -> None:
    found = problems(ports=[{"number": "abc"}, {"name": "b", "number": 70000}])
    where = [p.message.split(":")[0] for p in found]
    assert where == ["Ports, item 1", "Ports, item 1, number", "Ports, item 2, number"]


def test_providers_good() -> None:
    entries = [
        {"name": "fake1", "capacity": -1, "template": "t.yaml", "environment": "env.yaml"},
        {"name": "fake2", "capacity": 0},
    ]
    assert problems(providers=entries) == []
    assert problems(providers=[{"name": "fake1", "capacity": "None"}], known=None) == []
    assert problems(providers=[{"name": "anything"}], known=None) == []


@pytest.mark.parametrize(
    ("providers", "phrases"),
    [
        ({"name": "fake1"}, ["Providers: ", "expected a list"]),
        (["fake1"], ["Providers, item 1: ", "expected a mapping"]),
        ([{"capacity": 2}], ["Providers, item 1, name: ", "needs a name"]),
        ([{"name": "nope"}], ["Providers, item 1: ", "provider nope is not configured here", "fake1, fake2"]),
        ([{"name": "fake1", "capacity": -2}], ["item 1, capacity: ", "-1 (no limit) or more, got -2"]),
        ([{"name": "fake1", "capacity": "lots"}], ["capacity: ", "whole number, got 'lots'"]),
        ([{"name": "fake1", "template": ["a"]}], ["template: ", "expected text"]),
        ([{"name": "fake1", "size": 3}], ["unknown key size"]),
        ([{"name": "fake1"}, {"name": "fake2"}, {"name": "fake1"}],
         ["Providers, item 3: ", "'fake1' is already listed as item 1"]),
    ],
)  # fmt: skip
def test_providers_bad(providers: Any, phrases: list[str]) -> None:
    only("providers", *phrases, providers=providers)


def test_providers_known_list_can_be_empty() -> None:
    only("providers", "configured: none", known=(), providers=[{"name": "fake1"}])


def test_tests_good() -> None:
    assert problems(tests=[]) == []
    assert problems(tests=["true", "  exit 0\n"]) == []


@pytest.mark.parametrize(
    ("tests", "phrases"),
    [
        ("true", ["Tests: ", "expected a list"]),
        (["true", "   \n\t"], ["Tests, item 2: ", "only whitespace"]),
        ([""], ["Tests, item 1: ", "empty"]),
        ([5], ["Tests, item 1: ", "expected the text of a script, got 5"]),
    ],
)
def test_tests_bad(tests: Any, phrases: list[str]) -> None:
    only("tests", *phrases, tests=tests)


def test_hook_events_good() -> None:
    assert problems(hook_events={}) == []
    assert problems(hook_events={"suspend": True, "resume": True, "delete": True}) == []
    # Events all off need no script.
    assert problems(hook_events={"delete": False}, hook_script="") == []


@pytest.mark.parametrize(
    ("events", "phrases"),
    [
        (["suspend"], ["Hook events: ", "expected a mapping"]),
        ({"launch": True}, ["Hook events: ", "unknown event 'launch'", "suspend, resume, delete"]),
        ({"suspend": "true"}, ["Hook events, suspend: ", "expected true or false, got 'true'"]),
        ({"delete": 1}, ["Hook events, delete: ", "got 1"]),
    ],
)
def test_hook_events_bad(events: Any, phrases: list[str]) -> None:
    only("hook_events", *phrases, hook_events=events)


def test_hook_events_without_script() -> None:
    only("hook_script", "Hook script: ", "setting names events (suspend, delete) but no script", hook_script=" ",
         hook_events={"delete": True, "suspend": True})  # fmt: skip


def test_problems_come_in_field_order() -> None:
    found = problems(weight=-1, ports=[{"name": "x", "number": 0}], stack_user_name="", stack_protocol="x")
    assert [p.field for p in found] == ["weight", "stack_user_name", "stack_protocol", "ports"]


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("ports", "- name: ssh\n  number: 22\n", [{"name": "ssh", "number": 22}]),
        ("providers", "[{name: fake1, capacity: 2}]", [{"name": "fake1", "capacity": 2}]),
        ("tests", "- |\n  test -f /x\n", ["test -f /x\n"]),
        ("hook_events", "suspend: true\n", {"suspend": True}),
    ],
)
def test_parse_yaml_field(field: str, text: str, value: Any) -> None:
    assert authoring.parse_yaml_field(field, text) == value


@pytest.mark.parametrize(("field", "empty"), [("ports", []), ("providers", []), ("tests", []), ("hook_events", {})])
@pytest.mark.parametrize("text", ["", "  \n", "# nothing yet\n", "~"])
def test_parse_yaml_field_empty(field: str, empty: Any, text: str) -> None:
    assert authoring.parse_yaml_field(field, text) == empty


def test_parse_yaml_field_syntax_error_names_the_line() -> None:
    with pytest.raises(AuthoringError) as caught:
        authoring.parse_yaml_field("ports", "- name: ssh\n  number: 22\n- name: [web\n")
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.field == "ports"
    assert str(error).startswith("Ports: not valid YAML at line ")
    assert "line 4" in str(error) or "line 3" in str(error)
    assert error.as_problem() == FieldProblem("ports", str(error))


def test_parse_yaml_field_bad_indentation() -> None:
    with pytest.raises(AuthoringError, match=r"Hook events: not valid YAML at line 2, column \d+"):
        authoring.parse_yaml_field("hook_events", "suspend: true\n  resume: [\n")


def test_parse_yaml_field_unknown_field() -> None:
    with pytest.raises(AuthoringError, match="not a field edited as YAML"):
        authoring.parse_yaml_field("weight", "1")


def test_parse_yaml_field_is_safe() -> None:
    with pytest.raises(AuthoringError):
        authoring.parse_yaml_field("tests", "- !!python/object/apply:os.system ['true']\n")


def test_installed_child_types() -> None:
    def loader(available: set[str]):
        def load_class(name: str) -> object:
            if name not in available:
                raise ImportError(name)
            return object

        return load_class

    assert authoring.CHILD_BLOCK_TYPES == ("html", "video", "pdf", "markdown")
    assert authoring.installed_child_types(loader(set())) == ["html"]
    assert authoring.installed_child_types(loader({"pdf", "video"})) == ["html", "video", "pdf"]
    everything = authoring.installed_child_types(loader(set(authoring.CHILD_BLOCK_TYPES)))
    assert everything == list(authoring.CHILD_BLOCK_TYPES)


def test_summary() -> None:
    rows = dict(authoring.summary(GOOD))
    assert rows["Template path"] == "lab.yaml"
    assert rows["Protocol"] == "ssh"
    assert rows["Lab user name"] == "learner"
    assert rows["Providers"] == "fake1 (capacity 5), fake2 (capacity -1)"
    assert rows["Ports"] == "ssh (22), web (8080)"
    assert rows["Tests"] == "1"
    assert rows["Hook script"] == "hooks/suspend.sh"
    assert rows["Hook events"] == "suspend"
    assert all(isinstance(label, str) and isinstance(text, str) for label, text in authoring.summary({}))
    broken = dict(authoring.summary({"ports": "x", "providers": [1], "tests": None, "hook_events": []}))
    assert broken["Ports"] == "(none)" and broken["Tests"] == "0" and broken["Hook events"] == "(none)"


def render_author(**context: Any) -> str:
    base = {
        "display_name": "Lab",
        "summary": [],
        "problems": [],
        "children": [],
        "show_children": True,  # the unit page's preview; False: the block's own page
        "supported_types": "html, video, pdf, markdown",
    }
    return ResourceLoader("hastexo_xblock.block").render_django_template(
        "templates/hastexo_author.html", {**base, **context}
    )


def test_author_template_escapes_values_and_inserts_child_html() -> None:
    html = render_author(
        display_name="<b>Lab</b>",
        summary=[("Template path", "<script>alert(1)</script>"), ("Protocol", "ssh")],
        problems=["Ports, item 1: <img src=x>"],
        children=[{"type_label": "Text <i>", "html": '<p class="intro">Read <em>this</em></p>'}],
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;Lab&lt;/b&gt;" in html
    assert "&lt;img src=x&gt;" in html
    assert "Text &lt;i&gt;" in html
    assert '<p class="intro">Read <em>this</em></p>' in html
    assert 'class="hastexo-author-problems"' in html
    assert "Protocol" in html and "ssh" in html


def test_author_template_without_children_or_problems() -> None:
    html = render_author(supported_types="html, <video>")
    assert "hastexo-author-problems" not in html
    assert "no instructions yet" in html
    # The block's own page names what can be added (Studio's buttons follow), escaped.
    html = render_author(supported_types="html, <video>", show_children=False)
    assert "html, &lt;video&gt;" in html and "no instructions yet" not in html
    assert "hastexo-author-child-list" not in html
