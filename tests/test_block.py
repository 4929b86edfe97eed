"""The XBlock on the workbench runtime: handlers through ``block.handle``, the learner view."""

import json

import pytest
from webob import Request
from workbench.runtime import WorkbenchRuntime

from hastexo_xblock import states
from hastexo_xblock.conf import get_settings
from hastexo_xblock.gateway import tickets
from hastexo_xblock.models import Stack

pytestmark = [pytest.mark.django_db(transaction=True)]

XML = """
<hastexo display_name="Lab one" stack_template_path="t.yaml" stack_user_name="learner">
  <option:ports xmlns:option="http://code.edx.org/xblock/option">[{"name": "web", "number": 8080}]</option:ports>
  <html_demo><p class="instructions">Do <b>this</b>.</p></html_demo>
</hastexo>
"""
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END OPENSSH PRIVATE KEY-----"


def make_block(student="student_1", xml=XML):
    runtime = WorkbenchRuntime(student)
    runtime.id_generator.set_scenario("tests")
    return runtime.get_block(runtime.parse_xml_string(xml))


def call(block, handler, data=None, method="POST"):
    request = Request.blank(
        "/", method=method, body=json.dumps(data or {}).encode(), headers={"Content-Type": "application/json"}
    )
    response = block.handle(handler, request)
    return response.status_code, json.loads(response.body or b"{}")


@pytest.fixture
def sent(monkeypatch):
    """Record launches instead of sending them to a broker."""
    calls = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *a, **k: calls.append((a, k)))
    return calls


def bring_up(stack_id):
    Stack.objects.filter(pk=stack_id).update(
        status=states.CREATE_COMPLETE,
        ip="127.0.0.1",
        ssh_port=2222,
        private_key=KEY,
        password="pw-SECRET",
        host_key="ssh-ed25519 AAAAhost",
    )


def test_initialize_launches_once_and_reports_the_phase(sent):
    block = make_block()
    code, body = call(block, "get_user_stack_status", {"initialize": True, "reset": False})
    assert code == 200
    assert body["status"] == states.LAUNCH_PENDING and body["pending"] and not body["up"]
    assert body["phase"] == states.PHASE_QUEUED and body["phase_text"] and 0 < body["progress"] < 1
    assert body["name"].startswith("hx-workbench-")
    code, body = call(block, "get_user_stack_status", {"initialize": True})
    assert body["status"] == states.LAUNCH_PENDING
    assert len(sent) == 1 and sent[0][0][0] == "launch"


def test_status_without_initialize_only_reports(sent):
    _code, body = call(make_block(), "get_user_stack_status", {"initialize": False})
    assert body["status"] == states.DELETE_COMPLETE and not sent


def test_each_learner_gets_their_own_stack(sent):
    a = call(make_block("alice"), "get_user_stack_status", {"initialize": True})[1]["name"]
    b = call(make_block("bob"), "get_user_stack_status", {"initialize": True})[1]["name"]
    assert a != b and Stack.objects.count() == 2


def test_blocks_in_one_course_share_the_learners_stack(sent):
    call(make_block(), "get_user_stack_status", {"initialize": True})
    call(make_block(xml=XML.replace("Lab one", "Lab two")), "get_user_stack_status", {"initialize": True})
    assert Stack.objects.count() == 1 and len(sent) == 1


def test_reset_of_a_running_lab_launches_with_reset(sent):
    block = make_block()
    call(block, "get_user_stack_status", {"initialize": True})
    bring_up(Stack.objects.get().pk)
    _code, body = call(block, "get_user_stack_status", {"reset": True})
    assert body["status"] == states.LAUNCH_PENDING
    assert sent[-1][1]["reset"] is True


def test_broker_down_is_an_error_not_a_trap(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr("hastexo_xblock.dispatch.send", broken)
    _code, body = call(make_block(), "get_user_stack_status", {"initialize": True})
    assert body["status"] == states.LAUNCH_ERROR and body["failed"] and "try again" in body["error_msg"]


def test_ticket_only_for_a_running_lab_and_bound_to_the_learner(sent, settings):

    block = make_block()
    code, body = call(block, "get_ticket")
    assert code == 409 and "not running" in body["error"]
    call(block, "get_user_stack_status", {"initialize": True})
    stack = Stack.objects.get()
    bring_up(stack.pk)
    code, body = call(block, "get_ticket")
    assert code == 200 and body["url"].startswith("ws://127.0.0.1:1/ws?ticket=")
    ticket = tickets.verify(get_settings().ticket_secret, body["url"].split("ticket=")[1])
    assert (ticket.stack_id, ticket.learner, ticket.protocol) == (stack.pk, stack.anonymous_user_id, "ssh")
    assert ticket.read_only is False and ticket.expires > 0
    assert call(block, "get_ticket", method="GET")[0] == 405


def test_a_desktop_lab_offers_a_terminal_of_the_same_lab(sent):
    """``get_ticket {terminal: true}``: an SSH ticket at the lab's own login for a desktop lab, nothing else."""
    block = make_block()
    block.stack_protocol = "vnc"
    block.read_only = True
    block.ports = [{"name": "second", "number": 5902}]
    call(block, "get_user_stack_status", {"initialize": True})
    stack = Stack.objects.get()
    bring_up(stack.pk)
    Stack.objects.filter(pk=stack.pk).update(protocol="vnc", spec={"ports": [{"name": "second", "number": 5902}]})
    assert call(block, "set_port", {"port": 5902}) == (200, {"port": 5902})
    secret = get_settings().ticket_secret

    def ticket(body):
        code, answer = call(block, "get_ticket", body)
        assert code == 200, answer
        return answer["protocol"], tickets.verify(secret, answer["url"].split("ticket=")[1])

    protocol, desktop = ticket({})
    assert protocol == desktop.protocol == "vnc" and desktop.port == 5902
    protocol, terminal = ticket({"terminal": True})
    # The lab's SSH login (no port of the desktop's), as read-only as the block.
    assert protocol == terminal.protocol == "ssh" and terminal.port is None and terminal.read_only is True
    assert ticket({"terminal": False})[1].protocol == "vnc"
    for body in ({"terminal": "yes"}, {"terminal": 1}, {"protocol": "ssh"}, {"port": 22}):
        code, answer = call(block, "get_ticket", body)
        assert code == 400 and "error" in answer, body
    assert block.port == 5902  # a terminal leaves the learner's chosen desktop as it was
    html = block.runtime.render(block, "student_view", {}).content
    assert 'value="terminal"' in html and "Desktop (default)" in html


def test_set_port_accepts_only_configured_ports(sent):
    block = make_block()
    assert call(block, "set_port", {"port": 8080}) == (200, {"port": 8080})
    assert call(block, "set_port", {"port": 22})[0] == 400
    assert call(block, "set_port", {"port": "x"})[0] == 400
    assert Stack.objects.get().port == 8080


def test_keepalive_moves_suspend_by(sent):
    block = make_block()
    call(block, "get_user_stack_status", {"initialize": True})
    stack = Stack.objects.get()
    bring_up(stack.pk)
    assert call(block, "keepalive") == (200, {})
    assert Stack.objects.get().suspend_by is not None


def test_learner_view_has_the_lab_the_instructions_and_no_secrets(sent):
    block = make_block()
    call(block, "get_user_stack_status", {"initialize": True})
    bring_up(Stack.objects.get().pk)
    frag = block.runtime.render(block, "student_view")
    html = frag.body_html() + frag.foot_html() + frag.head_html()
    assert 'class="instructions"' in html and "hastexo-terminal" in html
    assert "xterm.js" in html and "hastexo.js" in html and "HastexoXBlock" in html
    for secret in ("TOPSECRETKEYMATERIAL", "pw-SECRET", "127.0.0.1:2222", "AAAAhost"):
        assert secret not in html
    _code, body = call(block, "get_user_stack_status", {"initialize": True})
    assert not any(secret in json.dumps(body) for secret in ("TOPSECRET", "pw-SECRET", "AAAAhost", "2222"))


def test_display_name_is_escaped(sent):
    block = make_block(xml=XML.replace("Lab one", "&lt;script&gt;alert(1)&lt;/script&gt;"))
    html = block.runtime.render(block, "student_view").body_html()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_workbench_scenarios_are_linux_basics_and_the_desktop():
    from hastexo_xblock.block import HastexoXBlock

    [(title, xml), (desktop, desktop_xml), (watched, watched_xml)] = HastexoXBlock.workbench_scenarios()
    assert title == "Linux basics" and "<html_demo>" in xml and 'stack_template_path="linux-basics.yaml"' in xml
    assert watched == "Linux desktop, read-only"
    assert desktop == "Linux desktop" and 'stack_protocol="vnc"' in desktop_xml and "read_only" not in desktop_xml
    assert 'stack_template_path="linux-desktop.yaml"' in watched_xml and 'read_only="true"' in watched_xml


def test_the_page_loads_the_desktop_clients_it_may_need_by_url(sent):
    """The init args name the protocol and the vendored noVNC/Guacamole modules (files the package ships)."""
    import os

    import hastexo_xblock

    block = make_block(xml=XML.replace("<hastexo ", '<hastexo stack_protocol="vnc" ', 1))
    args = block.student_view({}).json_init_args
    assert args["protocol"] == "vnc"
    assert args["desktop"]["resize_method"] == get_settings()["lab_resize_method"]
    package = os.path.dirname(hastexo_xblock.__file__)
    for key, path in (
        ("novnc_url", "static/vendor/novnc/novnc.js"),
        ("guacamole_url", "static/vendor/guacamole/guacamole.js"),
    ):
        assert args["desktop"][key].endswith(path)
        assert os.path.getsize(os.path.join(package, path)) > 10_000


def test_set_port_can_go_back_to_the_default_and_the_ticket_follows(sent):
    block = make_block()
    call(block, "get_user_stack_status", {"initialize": True})
    stack = Stack.objects.get()
    bring_up(stack.pk)
    Stack.objects.filter(pk=stack.pk).update(spec={"ports": [{"name": "web", "number": 8080}]})
    secret = get_settings().ticket_secret

    def ticket_port():
        return tickets.verify(secret, call(block, "get_ticket")[1]["url"].split("ticket=")[1]).port

    assert call(block, "set_port", {"port": 8080}) == (200, {"port": 8080})
    assert ticket_port() == 8080
    assert call(block, "set_port", {"port": None}) == (200, {"port": None})
    assert ticket_port() is None and Stack.objects.get().port is None
    # A port the lab no longer offers is not put in a ticket.
    Stack.objects.filter(pk=stack.pk).update(port=8080, spec={"ports": []})
    assert ticket_port() is None


def test_the_port_selector_lists_the_ports_as_text(sent):
    xml = XML.replace('"name": "web"', '"name": "&lt;b&gt;web&lt;/b&gt;"')
    html = make_block(xml=xml).student_view({}).content
    assert '<option value="8080">&lt;b&gt;web&lt;/b&gt; (8080)</option>' in html


def test_staff_viewing_as_a_learner_get_the_learners_lab_and_the_ticket_names_them(sent, monkeypatch):
    class Staff:
        username = "staff_member"

    class Learner:
        real_user = Staff()

    learner_block = make_block("learner_one")
    call(learner_block, "get_user_stack_status", {"initialize": True})
    stack = Stack.objects.get()
    bring_up(stack.pk)

    # edx-platform runs the block as the learner and keeps the staff user as request.user.real_user.
    monkeypatch.setattr("hastexo_xblock.compat._request_user", lambda: Learner())
    masquerading = make_block("learner_one")
    code, body = call(masquerading, "get_ticket")
    assert code == 200
    ticket = tickets.verify(get_settings().ticket_secret, body["url"].split("ticket=")[1])
    assert (ticket.stack_id, ticket.learner) == (stack.pk, stack.anonymous_user_id)
    assert ticket.actor == "staff_member as learner_one"
    assert Stack.objects.count() == 1


def test_a_hidden_lab_has_no_terminal_but_can_be_checked(sent):
    xml = XML.replace('stack_user_name="learner"', 'stack_user_name="learner" hidden="true"').replace(
        "</hastexo>", "<test>true</test></hastexo>"
    )
    block = make_block(xml=xml)
    frag = block.student_view({})
    assert "hastexo-terminal" not in frag.content and "hastexo-check-button" in frag.content
    assert frag.json_init_args["hidden"] is True
    # Opening the unit still launches the lab, and keepalives still reach it.
    assert call(block, "get_user_stack_status", {"initialize": True})[1]["status"] == states.LAUNCH_PENDING


def ticket_request(headers, host="lms.example.org", scheme="http"):
    request = Request.blank(
        "/", method="POST", body=b"{}", headers={"Content-Type": "application/json", "Host": host, **headers}
    )
    request.scheme = scheme
    return request


@pytest.mark.parametrize(
    ("headers", "scheme", "expected"),
    [
        # Behind a TLS-terminating proxy (Caddy, nginx, a load balancer) the LMS sees plain HTTP.
        ({"X-Forwarded-Proto": "https"}, "http", "wss://lms.example.org/hastexo-gateway/ws?ticket="),
        ({"X-Forwarded-Proto": "https, http"}, "http", "wss://lms.example.org/hastexo-gateway/ws?ticket="),
        ({"Origin": "https://lms.example.org"}, "http", "wss://lms.example.org/hastexo-gateway/ws?ticket="),
        ({}, "https", "wss://lms.example.org/hastexo-gateway/ws?ticket="),
        ({}, "http", "ws://lms.example.org/hastexo-gateway/ws?ticket="),
        # Another site's Origin says nothing about this page; the proxy's header still counts.
        ({"Origin": "https://evil.example", "X-Forwarded-Proto": "http"}, "http", "ws://lms.example.org/"),
    ],
)
def test_the_websocket_url_follows_the_scheme_the_browser_used(sent, hastexo_settings, headers, scheme, expected):
    hastexo_settings(gateway_url="/hastexo-gateway/ws")
    block = make_block()
    call(block, "get_user_stack_status", {"initialize": True})
    bring_up(Stack.objects.get().pk)
    response = block.handle("get_ticket", ticket_request(headers, scheme=scheme))
    assert response.status_code == 200
    assert json.loads(response.body)["url"].startswith(expected)
