"""Studio: the author view instead of a lab, child blocks added and arranged in Studio, copy/paste keeps everything.

Studio's own code cannot run here; where a test needs it, it does what
Studio does, step by step, as read from edx-platform:

* the preview picks ``author_view`` only when the block says
  ``has_author_view`` (``cms/djangoapps/contentstore/views/preview.py``);
* the container page renders the block's ``author_view`` with
  ``root_xblock`` set to the block, and Studio's ``mako`` service wraps each
  child with its controls; "Add New Component" creates a block of the
  button's ``data-category`` and appends it to ``children``;
* copy serializes the block with its ``children`` emptied, then appends each
  child's OLX (``openedx/core/lib/xblock_serializer``); paste hands the block
  a copy of its node *without child elements*, then imports every child
  element as a child block (``cms/djangoapps/contentstore/helpers.py``).
"""

from __future__ import annotations

import html as html_lib
import re
import types

import pytest
import xblock.plugin
from lxml import etree
from sample_xblocks.basic.content import HtmlBlock
from webob import Request
from workbench.runtime import WorkbenchRuntime
from xblock.core import XBlock
from xblock.fields import ScopeIds

from hastexo_xblock.models import Stack

from .test_block import call

pytestmark = [pytest.mark.django_db(transaction=True)]

LAB = """
<hastexo display_name="Studio lab" stack_template_path="t.yaml" stack_user_name="learner"
         hook_script="hook.sh" xmlns:option="http://code.edx.org/xblock/option">
  <provider name="default" capacity="5" template="a.yaml"/>
  <port name="Web" number="8080"/>
  <port name="Desktop" number="5901"/>
  <hook_events suspend="true" resume="false" delete="true"/>
  <test><![CDATA[
test -f ~/one || { echo "Create one" >&2; exit 1; }
]]></test>
  <test><![CDATA[
grep -q two ~/file
]]></test>
  <html><p class="step">Step one</p></html>
</hastexo>
"""


class StudioMako:
    """Stands in for Studio's ``mako`` service: ``studio_render_children_view.html`` wraps each child."""

    namespace_prefix = ""

    def render_template(self, name, context):
        assert name == "studio_render_children_view.html" and self.namespace_prefix == "lms."
        reorderable = context["xblock_context"].get("reorderable_items", set()) if context["xblock_context"] else set()
        return "".join(
            f'<div class="studio-xblock-wrapper" data-locator="{item["id"]}" data-can-reorder="{bool(reorderable)}">'
            f"{item['content']}</div>"
            for item in context["items"]
        )


class StudioRuntime(WorkbenchRuntime):
    """The workbench runtime as Studio's is for a block: author mode, and the ``mako`` service."""

    is_author_mode = True

    def __init__(self, user_id="author"):
        super().__init__(user_id)
        self._services["mako"] = StudioMako()


class Html(HtmlBlock):
    """Plays the platform's ``html`` block: its content is the element's inner HTML."""

    @classmethod
    def parse_xml(cls, node, runtime, keys):
        block = runtime.construct_xblock_from_class(cls, keys)
        inner = "".join(etree.tostring(child, encoding="unicode") for child in node)
        block.content = (node.text or "") + inner
        return block


@pytest.fixture(autouse=True)
def html_block(monkeypatch):
    """Make ``html`` loadable, the way XBlock's ``register_temp_plugin`` does (an extra entry point)."""
    entry_point = types.SimpleNamespace(
        name="html", group="xblock.v1", load=lambda: Html, dist=types.SimpleNamespace(key="tests")
    )
    monkeypatch.setattr(XBlock, "extra_entry_points", [*XBlock.extra_entry_points, ("html", entry_point)])
    monkeypatch.setattr(xblock.plugin, "PLUGIN_CACHE", {})


def load(runtime, xml=LAB):
    runtime.id_generator.set_scenario("studio")
    return runtime.get_block(runtime.parse_xml_string(xml))


def studio_preview(block):
    """What Studio's preview renders: ``author_view`` if the block has one, else the learner's view."""
    view = "author_view" if getattr(block, "has_author_view", False) else "student_view"
    return block.runtime.render(block, view, {"reorderable_items": set(), "is_unit_page": True})


def test_studio_preview_shows_the_author_view_and_launches_no_lab():
    block = load(StudioRuntime())
    html = studio_preview(block).content
    assert "hastexo-author" in html and "HastexoXBlock" not in html and "hastexo.js" not in html
    assert "Step one" in html  # the instructions, previewed
    # Studio's JS has nothing to call, and the handlers refuse anyway: no shared lab for all authors.
    code, body = call(block, "get_user_stack_status", {"initialize": True})
    assert code == 409 and "do not run in Studio" in str(body)
    assert call(block, "check_progress", {})[0] == 409
    assert block.handle("get_ticket", Request.blank("/", method="POST", body=b"{}")).status_code == 409
    assert Stack.objects.count() == 0
    # Even the learner's view, asked for by name in Studio, shows the preview.
    assert "HastexoXBlock" not in block.runtime.render(block, "student_view", {}).content


def test_the_learner_view_still_launches_the_lab():
    block = load(WorkbenchRuntime("learner"))
    assert "HastexoXBlock" in block.runtime.render(block, "student_view", {}).content


def add_buttons(html):
    return dict(re.findall(r'data-category="([^"]+)"[^>]*>\s*([^<]+?)\s*<', html))


def studio_add(block, category, content):
    """Studio's "Add New Component": a new block of ``category`` appended to the container's children."""
    runtime = block.runtime
    child_id = runtime.parse_xml_string(f"<{category}>{content}</{category}>")
    block.children.append(child_id)
    block.save()
    return child_id


def container_page(block, fragment=False):
    """Studio's page of the block itself (the "View" link): ``author_view`` with the block as ``root_xblock``."""
    context = {"root_xblock": block, "reorderable_items": set()}
    return block.author_view(context) if fragment else block.runtime.render(block, "author_view", context).content


def learner_view(block):
    learner = WorkbenchRuntime("learner")
    return learner.render(learner.get_block(block.scope_ids.usage_id), "student_view", {}).content


def test_an_html_child_added_in_studio_appears_in_the_learner_view():
    block = load(StudioRuntime(), LAB.replace('<html><p class="step">Step one</p></html>', ""))
    page = container_page(block)
    assert add_buttons(page).get("html") == "Text"  # Studio's "Add New Component" offers html
    # The mixin's JS drives the buttons.
    assert container_page(block, fragment=True).js_init_fn == "StudioContainerXBlockWithNestedXBlocksMixin"
    studio_add(block, "html", '<p class="added">Run <code>ls</code> first.</p>')
    page = container_page(block)
    assert page.count("studio-xblock-wrapper") == 1 and "Run <code>ls</code> first." in page
    assert '<p class="added">Run <code>ls</code> first.</p>' in learner_view(block)


@pytest.mark.parametrize("layout", ["left", "below"])
def test_children_are_reordered_and_deleted_and_follow_the_layout(hastexo_settings, layout):
    hastexo_settings(instructions_layout=layout)
    block = load(StudioRuntime())
    second = studio_add(block, "html", '<p class="step">Step two</p>')
    view = learner_view(block)
    assert view.index("Step one") < view.index("Step two")
    block.children = [second, *[child for child in block.children if child != second]]  # Studio's drag to reorder
    block.save()
    view = learner_view(block)
    assert view.index("Step two") < view.index("Step one")
    instructions, lab = view.index('class="hastexo-instructions"'), view.index('class="hastexo-main"')
    assert (instructions < lab) == (layout == "left") and f"hastexo-layout-{layout}" in view
    block.children = [second]  # Studio's delete
    block.save()
    assert "Step one" not in learner_view(block) and "Step two" in container_page(block)


# --- copy and paste, the platform's way -------------------------------------------------


def studio_copy(block) -> etree._Element:
    """The clipboard's OLX: the block serialized with its children emptied, then each child's OLX."""
    if block.scope_ids.block_type == "html":  # the serializer writes html blocks itself, as CDATA
        node = etree.Element("html", url_name=str(block.scope_ids.usage_id))
        node.text = etree.CDATA(block.content)
        return node
    node = etree.Element("root")
    children = block.children if block.has_children else []
    if block.has_children:
        block.children = []
    block.add_xml_to_node(node)
    if block.has_children:
        block.children = children
    for child_id in children:
        node.append(studio_copy(block.runtime.get_block(child_id)))
    if "url_name" not in node.attrib:
        node.set("url_name", str(block.scope_ids.usage_id))
    return node


def studio_paste(node, runtime):
    """Paste: parse the node *without its child elements*, then import each child element as a child block."""
    block_type = node.tag
    def_id = runtime.id_generator.create_definition(block_type)
    keys = ScopeIds(None, block_type, def_id, runtime.id_generator.create_usage(def_id))
    block_class = runtime.load_block_type(block_type)
    child_nodes = []
    if block_class.has_children:
        node_without_children = etree.Element(node.tag, **node.attrib)
        block = block_class.parse_xml(node_without_children, runtime, keys)
        child_nodes = list(node)
        assert not block.children
    else:
        block = block_class.parse_xml(node, runtime, keys)
    block.save()
    for child_node in child_nodes:
        block.children.append(studio_paste(child_node, runtime).scope_ids.usage_id)
    block.save()
    return block


SETTINGS = ("tests", "ports", "providers", "hook_events", "hook_script", "display_name", "stack_template_path")


def test_a_pasted_block_keeps_tests_ports_providers_and_hook_events():
    original = load(StudioRuntime())
    assert len(original.tests) == 2 and len(original.ports) == 2 and original.providers and original.hook_events
    clipboard = etree.tostring(studio_copy(original))
    pasted = studio_paste(etree.fromstring(clipboard), StudioRuntime())
    for name in SETTINGS:
        assert getattr(pasted, name) == getattr(original, name), name
    assert [pasted.runtime.get_block(child).scope_ids.block_type for child in pasted.children] == ["html"]
    assert "Step one" in html_lib.unescape(learner_view(pasted))


def test_the_clipboard_olx_holds_no_setting_as_a_child_element():
    """Every child element of the copied OLX is a block; Studio would import ``<test>`` as a block type."""
    node = studio_copy(load(StudioRuntime()))
    assert [child.tag for child in node] == ["html"]
