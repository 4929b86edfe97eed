"""Which provider a lab uses, as the original chose it, and "provider X is not configured here"."""

from __future__ import annotations

import pytest

from hastexo_xblock import authoring, labs, states
from hastexo_xblock.legacy import settings as legacy_settings

pytestmark = [pytest.mark.django_db]

FILLED = {
    "os_auth_url": "https://keystone.example.org/v3",
    "os_username": "u",
    "os_password": "p",
    "os_project_name": "p",
}


def launch(spec, learner="chooser"):
    sent = []
    stack = labs.get_stack("course-v1:o+providers+r", learner)
    body = labs.status(stack, spec, initialize=True, enqueue=lambda *a, **k: sent.append(a))
    stack.refresh_from_db()
    return body, stack, sent


@pytest.mark.parametrize(
    ("providers", "spec", "chosen"),
    [
        ({"a": {"type": "fake"}, "default": {"type": "fake"}}, labs.LabSpec(template="t.yaml"), ["default"]),
        ({"a": {"type": "fake"}, "b": {"type": "fake"}}, labs.LabSpec(template="t.yaml"), ["a"]),
        ({"a": {"type": "fake"}, "b": {"type": "fake"}}, labs.LabSpec(template="t.yaml", provider="b"), ["b"]),
        (
            {"a": {"type": "fake"}, "b": {"type": "fake"}},
            labs.LabSpec(template="t.yaml", provider="b", providers=[{"name": "a"}]),
            ["a"],
        ),
    ],
)
def test_the_providers_a_launch_tries_are_the_originals_choice(
    fake_providers, hastexo_settings, providers, spec, chosen
):
    hastexo_settings(providers=providers)
    body, stack, sent = launch(spec)
    assert body["status"] == states.LAUNCH_PENDING and len(sent) == 1
    assert [entry["name"] for entry in stack.spec["providers"]] == chosen


def test_a_lab_on_a_provider_not_configured_here_says_so_at_launch(fake_providers):
    body, stack, sent = launch(labs.LabSpec(template="t.yaml", providers=[{"name": "cloud-b"}]))
    assert body["failed"] and not sent and stack.status == states.DELETE_COMPLETE
    assert body["error_msg"] == "This lab cannot start: provider cloud-b is not configured here."


def test_another_provider_of_the_block_is_still_tried(fake_providers, caplog):
    body, _stack, sent = launch(labs.LabSpec(template="t.yaml", providers=[{"name": "cloud-b"}, {"name": "fake1"}]))
    assert body["status"] == states.LAUNCH_PENDING and sent
    assert "provider cloud-b is not configured here" in caplog.text


def test_a_refused_gcloud_provider_is_named_with_the_reason(fake_providers, hastexo_settings):
    settings = hastexo_settings(providers={"default": {"type": "fake"}, "gc": {"type": "gcloud", "gc_project_id": "p"}})
    assert "gc" not in settings["providers"] and settings.unavailable_providers["gc"] == legacy_settings.GCLOUD_REFUSED
    body, _stack, sent = launch(labs.LabSpec(template="t.yaml", provider="gc"))
    assert (
        not sent
        and "provider gc is not configured here (gcloud: Google Cloud Deployment Manager is retired)"
        in (body["error_msg"])
    )


def test_an_unused_default_placeholder_is_reported_rather_than_skipped(fake_providers, hastexo_settings):
    hastexo_settings(providers={"default": {"type": "openstack", "os_auth_url": ""}, "other": {"type": "fake"}})
    body, _stack, sent = launch(labs.LabSpec(template="t.yaml"))
    assert not sent and "provider default is not configured here (it has no credentials)" in body["error_msg"]


def test_studio_reports_the_providers_not_configured_here():
    values = {"stack_template_path": "t.yaml", "stack_user_name": "u", "provider": "nowhere", "providers": []}
    [problem] = authoring.validate(values, known_providers=["default"])
    assert problem.field == "provider" and "provider nowhere is not configured here" in problem.message
    values["providers"] = [{"name": "cloud-b", "capacity": -1, "template": None, "environment": None}]
    [problem] = authoring.validate(values, known_providers=["default"])
    assert problem.field == "providers" and "provider cloud-b is not configured here" in problem.message
