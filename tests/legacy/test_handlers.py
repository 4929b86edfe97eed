"""The original's handler names: ``get_check_status`` (report, or start a check) and ``launch_new_window``."""

from __future__ import annotations

import json
import re

import pytest

from hastexo_xblock import compat
from hastexo_xblock.legacy import handlers as original_handlers
from hastexo_xblock.models import Check

from ..test_block import call
from ..test_checks import RESULTS, TEST_NOTES, TEST_SCRIPT, finish, grades, lab_xml, recording, up_block
from .test_state import WEIGHT, block_for

pytestmark = [pytest.mark.django_db(transaction=True)]


# --- the original's get_check_status: report, or start when none runs ---------------


def test_get_check_status_keeps_the_originals_contract(queued):
    block, _stack = block_for("checked")
    events = recording(block)
    first = call(block, "get_check_status")[1]
    assert first == {"status": original_handlers.PENDING}  # nothing was running: it started one
    [(_name, check_id)] = queued
    assert call(block, "get_check_status")[1] == {"status": original_handlers.PENDING}  # running: no second
    assert len(queued) == 1
    finish(check_id, RESULTS)
    done = call(block, "get_check_status")[1]
    assert done == {
        "status": original_handlers.COMPLETE,
        "message": "You completed 1 of 2 tasks.",
        "pass": 1,
        "total": 2,
        "errors": ["fix it"],
    }
    assert grades(events) == [pytest.approx((0.5 * WEIGHT, WEIGHT))]
    again = call(block, "get_check_status")[1]  # reported: the next call starts a new check
    assert again == {"status": original_handlers.PENDING} and len(queued) == 2
    assert Check.objects.filter(stack__anonymous_user_id=compat.anonymous_user_id(block)).count() == 2


def test_get_check_status_reports_an_error_once_then_starts_anew(queued):
    block, _stack = up_block("legacy-errors", lab_xml(TEST_NOTES))
    call(block, "get_check_status")
    check = Check.objects.get(pk=block.check_id)
    Check.objects.filter(pk=check.pk).update(status=Check.ERROR, error_msg="The lab could not be reached.")
    assert call(block, "get_check_status")[1] == {"status": "ERROR", "error_msg": "The lab could not be reached."}
    assert call(block, "get_check_status")[1] == {"status": original_handlers.PENDING}
    assert len(queued) == 2


def test_get_check_status_hides_what_the_author_hides(queued):
    block, _stack = up_block("legacy-quiet", lab_xml(TEST_NOTES, TEST_SCRIPT, extra='show_feedback="false"'))
    call(block, "get_check_status")
    finish(block.check_id, RESULTS)
    body = call(block, "get_check_status")[1]
    assert body == {"status": original_handlers.COMPLETE, "message": "Your progress has been checked."}


def test_get_check_status_with_the_originals_pending_check(queued):
    block, _stack = block_for("check-pending")
    body = call(block, "get_check_status")[1]
    assert body["status"] == "ERROR" and "upgraded" in body["error_msg"]
    assert call(block, "get_check_status")[1] == {"status": original_handlers.PENDING}


# --- launch_new_window: the lab alone, on a page of its own ------------------------------


def window(block):
    from webob import Request

    response = block.handle("launch_new_window", Request.blank("/", method="GET"))
    return response


def test_launch_new_window_is_the_lab_alone(queued):
    xml = lab_xml(TEST_NOTES, extra='display_name="Lab &lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;"')
    block, _stack = up_block("window", xml.replace(' display_name="Checked lab"', ""))
    response = window(block)
    assert response.status_code == 200 and response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert "hastexo-terminal" in page and "hastexo-check-button" not in page  # the lab, not the unit
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    [init] = re.findall(r'<script id="hastexo-window-init" type="application/json">(.*?)</script>', page, re.S)
    data = json.loads(init)
    assert data["init_fn"] == "HastexoXBlock"
    assert set(data["handler_urls"]) == {"get_user_stack_status", "keepalive", "set_port", "get_ticket"}
    assert all("/handler/" in url or "handler" in url for url in data["handler_urls"].values())
    assert data["init_args"]["check_on_load"] is False
    assert "hastexo.js" in page and "xterm.js" in page


def test_the_originals_handlers_start_nothing_in_studio(queued):
    block, _stack = up_block("studio-author", lab_xml(TEST_NOTES))
    block.runtime.is_author_mode = True  # what Studio's runtimes say
    code, body = call(block, "get_check_status")
    assert code == 409 and "do not run in Studio" in body["error"]
    response = window(block)
    assert response.status_code == 409 and "do not run in Studio" in response.json_body["error"]
    assert queued == [] and not Check.objects.exists()
