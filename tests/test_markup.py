"""Markup a learner writes never reaches a page unescaped: not the unit's init args, not the window page.

The learner-controlled text of the block is what their lab prints: a failing
test's standard error becomes a hint.  It is injected here as
``</script><img src=x onerror=…>`` (plus U+2028 and ``&``), then the unit is
rendered by the workbench runtime (which writes the init args into a
``<script type="json/xblock-args">`` with a bare ``json.dumps``) and wrapped
the two ways the LMS has written them (``/`` escaped as ``\\/``, and
``<``, ``>``, ``&`` as ``\\u003c``…), and the ``launch_new_window`` page is
rendered; each page is parsed as a browser would and must hold no element
the learner wrote.  The hint still reaches the page as data, through
``check_status``, for the script to insert as text (the browser journey in
``test_browser.py`` checks the text after a reload in Chromium).
"""

from __future__ import annotations

import json
import re

import pytest
from lxml import html as lxml_html
from webob import Request

from hastexo_xblock.models import Check

from .test_block import call
from .test_checks import TEST_NOTES, TEST_SCRIPT, lab_xml, queued, up_block  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

PAYLOAD = '</script><img src=x onerror="window.pwned=1">\u2028&amp; </SCRIPT ><svg onload=alert(1)>'


def with_learner_hint(student: str):
    """A learner's block whose last check failed with ``PAYLOAD`` as the hint (their script's stderr)."""
    block, _stack = up_block(student, lab_xml(TEST_NOTES, TEST_SCRIPT))
    check_id = call(block, "check_progress")[1]["id"]
    results = [
        {"passed": False, "hint": PAYLOAD, "timed_out": False},
        {"passed": True, "hint": "", "timed_out": False},
    ]
    Check.objects.filter(pk=check_id).update(status=Check.DONE, results=results, passed=1, total=2)
    return block


def injected_elements(page: str) -> list[str]:
    """Elements of ``page`` (parsed as a browser does) that the payload would have created."""
    tree = lxml_html.fromstring(page)
    found = tree.xpath("//img | //svg | //*[@onerror] | //*[@onload]")
    return [lxml_html.tostring(element, encoding="unicode")[:80] for element in found]


def init_args_of(page: str) -> dict:
    [script] = lxml_html.fromstring(page).xpath("//script[@type='json/xblock-args']")
    return json.loads(script.text)


# Two ways the LMS has written the init args: json.dumps with "/" escaped (older wrap_xblock), and its
# dump_js_escaped_json filter ("<", ">", "&" as \u003c, \u003e, \u0026).  Both are restated here, not imported.
def lms_slash_escaped(args: dict) -> str:
    return json.dumps(args).replace("/", "\\/")


def lms_js_escaped(args: dict) -> str:
    text = json.dumps(args, ensure_ascii=True)
    return text.replace("&", "\\u0026").replace(">", "\\u003e").replace("<", "\\u003c")


def lms_page(body: str, args_json: str) -> str:
    return (
        '<html><body><div class="xblock" data-init="HastexoXBlock">'
        f'<script type="json/xblock-args" class="xblock-json-init-args">{args_json}</script>{body}</div></body></html>'
    )


def test_the_hint_is_data_from_check_status_not_part_of_the_page(queued):  # noqa: F811
    block = with_learner_hint("markup-unit")
    fragment = block.runtime.render(block, "student_view", {})
    page = fragment.body_html()
    args = init_args_of(page)
    assert args["check_on_load"] is True  # the page asks for the result on load...
    assert injected_elements(page) == []
    # ...and gets the hint as JSON data, exactly as the script printed it.
    assert call(block, "check_status")[1]["hints"] == [PAYLOAD]


def test_the_init_args_hold_nothing_html_could_read_as_markup(queued):  # noqa: F811
    """Whatever the host's escaping, init args without <, >, & or U+2028/9 cannot break out of the script."""
    block = with_learner_hint("markup-args")
    args = block.student_view({}).json_init_args
    assert not re.search("[<>&\u2028\u2029]", json.dumps(args, ensure_ascii=False)), args


@pytest.mark.parametrize("escape", [json.dumps, lms_slash_escaped, lms_js_escaped], ids=["bare", "lms-slash", "lms-js"])
def test_the_unit_in_each_hosts_wrapper_has_no_learner_markup(queued, escape):  # noqa: F811
    block = with_learner_hint(f"markup-{escape.__name__}")
    fragment = block.student_view({})
    page = lms_page(fragment.body_html(), escape(fragment.json_init_args))
    assert injected_elements(page) == []
    assert init_args_of(page) == fragment.json_init_args
    assert "pwned" not in page and "onerror" not in page


def test_the_window_page_has_no_learner_markup(queued):  # noqa: F811
    block = with_learner_hint("markup-window")
    response = block.handle("launch_new_window", Request.blank("/", method="GET"))
    page = response.body.decode()
    assert response.status_code == 200
    assert injected_elements(page) == [] and "pwned" not in page
    [init] = lxml_html.fromstring(page).xpath("//script[@id='hastexo-window-init']")
    assert json.loads(init.text)["init_args"]["check_on_load"] is False  # the window page shows no checks
