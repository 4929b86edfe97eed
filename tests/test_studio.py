"""Studio: editing every field (lists and mappings as YAML), validation on save, the author view, layouts."""

import pytest

from .test_block import call, make_block

pytestmark = [pytest.mark.django_db(transaction=True)]

LAB = """
<hastexo display_name="Studio lab" stack_template_path="t.yaml" stack_user_name="learner">
  <test><![CDATA[
    test -f done
  ]]></test>
  <html_demo><p class="instructions">Step one: <b>look</b>.</p></html_demo>
</hastexo>
"""

PORTS_YAML = "- name: Desktop\n  number: 5901\n- name: Web\n  number: 8080\n"
TESTS_YAML = "- |\n  test -f one\n- |\n  grep -q two file\n"


def save(block, **values):
    return call(block, "submit_studio_edits", {"values": values, "defaults": []})


def test_every_field_can_be_edited_and_lists_are_yaml():
    block = make_block("author")
    code, body = save(
        block,
        display_name="Renamed",
        ports=PORTS_YAML,
        tests=TESTS_YAML,
        hook_script="hook.sh",
        hook_events="{suspend: true, resume: false}",
        providers="",
        launch_timeout=600,
    )
    assert (code, body) == (200, {"result": "success"})
    assert block.ports == [{"name": "Desktop", "number": 5901}, {"name": "Web", "number": 8080}]
    assert block.tests == ["test -f one\n", "grep -q two file\n"]
    assert block.hook_events == {"suspend": True, "resume": False}
    assert block.providers == [] and block.launch_timeout == 600 and block.display_name == "Renamed"
    editable = set(block.editable_fields)
    assert {"ports", "providers", "tests", "hook_script", "hook_events", "enable_fullscreen"} <= editable


def test_the_editor_shows_lists_as_yaml_text():
    block = make_block("author", LAB.replace("<test>", '<port name="Web" number="8080"/><test>'))
    info = block._make_field_info("tests", block.fields["tests"])
    assert info["type"] == "text" and info["value"] == "- |\n  test -f done\n"
    info = block._make_field_info("ports", block.fields["ports"])
    assert info["value"] == "- name: Web\n  number: 8080\n" and info["display_name"] == "Ports"


def test_yaml_syntax_errors_are_refused_with_their_line():
    block = make_block("author")
    before = block.ports
    code, body = save(block, ports="- name: Web\n  number: [8080\n")
    assert code == 400
    text = " ".join(message["text"] for message in body["error"]["messages"])
    assert "Ports: not valid YAML at line" in text
    assert block.ports == before  # nothing saved


@pytest.mark.parametrize(
    ("values", "phrase"),
    [
        ({"ports": "- {name: Web, number: abc}"}, "Ports, item 1, number"),
        ({"ports": "- {name: Web, number: 8080}\n- {name: Again, number: 8080}"}, "already used by item 1"),
        ({"providers": "- {name: nowhere}"}, "Providers, item 1"),
        ({"tests": "- '   '"}, "Tests, item 1"),
        ({"hook_events": "{suspend: true}"}, "Hook script"),
        ({"hook_events": "{reboot: true}", "hook_script": "h.sh"}, "unknown event 'reboot'"),
        ({"stack_user_name": ""}, "Lab user name"),
        ({"weight": -1}, "Weight"),
        ({"launch_timeout": -5}, "Launch timeout"),
    ],
)
def test_bad_values_are_refused_on_save_with_a_message(values, phrase):
    block = make_block("author")
    before = {name: getattr(block, name) for name in values}
    code, body = save(block, **values)
    assert code == 400, body
    messages = [message["text"] for message in body["error"]["messages"]]
    assert any(phrase in text for text in messages), messages
    assert {name: getattr(block, name) for name in values} == before


def test_the_author_view_lists_the_children_and_escapes_settings():
    block = make_block("author", LAB.replace('display_name="Studio lab"', 'display_name="Lab &lt;script&gt;x"'))
    html = block.author_view({}).content
    assert '<p class="instructions">Step one: <b>look</b>.</p>' in html
    assert "Lab &lt;script&gt;x" in html and "<script>x" not in html
    assert "t.yaml" in html and "html" in html
    assert "hastexo-author-problems" not in html  # a sound lab has none


def test_the_author_view_shows_problems():
    block = make_block("author", LAB.replace('stack_user_name="learner"', ""))
    html = block.author_view({}).content
    assert "hastexo-author-problems" in html and "Lab user name" in html


def test_html_is_always_offered_as_a_child_type():
    assert make_block("author").allowed_nested_blocks[0].category == "html"


@pytest.mark.parametrize("layout", ["above", "below", "left", "right"])
def test_instructions_layout(hastexo_settings, layout):
    hastexo_settings(instructions_layout=layout)
    html = make_block("learner-layout", LAB).student_view({}).content
    assert f"hastexo-layout-{layout}" in html
    instructions, lab = html.index('class="hastexo-instructions"'), html.index('class="hastexo-main"')
    assert (instructions < lab) == (layout in ("above", "left"))
