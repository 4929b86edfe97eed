"""Errors in two layers: the learner reads a catalog message; the cloud's own words stay with operators.

Heat's messages can carry URLs, host names, TLS and authentication details.
They reach the logs and ``Stack.error_detail`` (shown in the admin), never
``Stack.error_msg``, the status response or the learner's page.
"""

import json

import pytest
from django.utils import translation
from heatclient import exc as heat_exc

from hastexo_xblock import labs, lifecycle, messages, states
from hastexo_xblock.models import Stack, transition
from hastexo_xblock.providers.base import ProviderError, TemplateError, TransientProviderError
from hastexo_xblock.providers.heat import HeatProvider

from .fakes import FakeProvider

pytestmark = [pytest.mark.django_db(transaction=True)]

URL = "https://heat.internal.example.com:8004/v1/4f1c0e2b"
TOKEN = "gAAAAABnS3cr3tT0k3nxYz"
HEAT_TEXT = f"Unable to establish connection to {URL}/stacks: X-Auth-Token {TOKEN} rejected by proxy (SSL: CERT)"
CONFIG = {
    "type": "openstack",
    "os_auth_url": "https://keystone.example.com:5000/v3",
    "os_username": "demo",
    "os_password": "s3cret-password",
    "os_project_name": "demo",
}


def launch(spec_providers=("fake1",), learner="learner"):
    sent = []
    stack = labs.get_stack("course-v1:o+c+r", learner)
    spec = labs.LabSpec(template="t.yaml", providers=[{"name": name} for name in spec_providers])
    labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: sent.append(a))
    [(_name, stack_id, attempt)] = sent
    return lifecycle.launch(stack_id, attempt), Stack.objects.get(pk=stack_id)


def assert_learner_never_sees_it(stack):
    shown = [stack.error_msg, json.dumps(labs.view(stack))]
    for language in ("en", "de"):
        with translation.override(language):
            shown.append(messages.render(stack.error_msg))
    for text in shown:
        assert URL not in text and TOKEN not in text and "heat.internal" not in text and "SSL" not in text
    assert URL in stack.error_detail  # the operator still sees exactly what happened


@pytest.fixture(autouse=True)
def template(tmp_path, hastexo_settings):
    (tmp_path / "t.yaml").write_text("fake template")
    hastexo_settings(template_dir=str(tmp_path))


def test_heats_exception_text_is_the_operators_detail_and_the_learner_gets_a_code() -> None:
    provider = HeatProvider("cloud", CONFIG)

    def unreachable():
        raise heat_exc.CommunicationError(HEAT_TEXT)

    with pytest.raises(TransientProviderError) as info:
        provider._call("create stack hx-a", unreachable)
    assert URL in str(info.value)  # operator detail: the full story
    assert info.value.learner == ("provider.unavailable", {})

    def rejected():
        raise heat_exc.HTTPBadRequest(json.dumps({"error": {"message": f"template fetch from {URL} failed"}}).encode())

    with pytest.raises(TemplateError) as info:
        provider._call("create stack hx-a", rejected, bad_request=TemplateError)
    assert URL in str(info.value) and info.value.learner == ("launch.template_refused", {})


def test_a_provider_error_with_a_url_and_a_token_never_reaches_the_learner(fake_providers, monkeypatch):
    def create(self, name, *args, **kwargs):
        raise ProviderError(f"provider 'fake1': create stack {name}: {HEAT_TEXT}")

    monkeypatch.setattr(FakeProvider, "create", create)
    status, stack = launch()
    assert status == states.CREATE_FAILED
    assert json.loads(stack.error_msg)["code"] == "launch.create_refused"
    assert_learner_never_sees_it(stack)


def test_a_failed_stacks_status_reason_never_reaches_the_learner(fake_providers):
    fake_providers(fake1={"fail_create": f"Resource CREATE failed: {HEAT_TEXT}"})
    status, stack = launch()
    assert status == states.CREATE_FAILED
    assert_learner_never_sees_it(stack)


def test_a_template_heat_refuses_is_named_as_a_template_problem_without_heats_words(fake_providers, monkeypatch):
    def create(self, name, *args, **kwargs):
        raise TemplateError(f"provider 'fake1': Heat rejected the template: could not fetch {URL}?token={TOKEN}")

    monkeypatch.setattr(FakeProvider, "create", create)
    status, stack = launch()
    assert status == states.LAUNCH_ERROR
    assert json.loads(stack.error_msg)["code"] == "launch.template_refused"
    assert "template" in labs.view(stack)["error_msg"]
    assert_learner_never_sees_it(stack)


def test_a_failed_resume_keeps_the_providers_words_for_operators(fake_providers, monkeypatch):
    status, stack = launch()
    assert status == states.CREATE_COMPLETE
    transition(stack.pk, states.SUSPEND_PENDING)
    lifecycle.suspend(stack.pk)
    monkeypatch.setattr(FakeProvider, "resume", lambda self, name: self._start(name, states.RESUME_FAILED, HEAT_TEXT))
    status, stack = launch()
    assert status == states.RESUME_FAILED
    assert_learner_never_sees_it(stack)


def test_a_third_party_providers_unknown_message_code_reads_as_the_generic_message():
    message = lifecycle.learner_message(ProviderError("quota at https://cloud.example/", learner_code="no.such.code"))
    assert message.code == "provider.failed" and "cloud.example" not in str(message)
