"""The Django admin for labs, through the test client: lists, filters, search, actions, and no secrets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from hastexo_xblock import messages, states
from hastexo_xblock.models import Stack, StackLog

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nADMIN-MUST-NEVER-SHOW-THIS\n-----END OPENSSH PRIVATE KEY-----"
PASSWORD = "lab-password-NEVER-SHOWN"
LIST = "/admin/hastexo_xblock/stack/"


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr("hastexo_xblock.dispatch.send", lambda *args, **kwargs: calls.append(args))
    return calls


def make_stack(name, status, learner=None, course="course-v1:Org+Lab+2026", provider="default", **extra):
    stack = Stack.objects.create(
        name=name,
        course_id=course,
        anonymous_user_id=f"anon-{name}",
        learner=learner,
        status=status,
        provider=provider,
        private_key=KEY,
        password=PASSWORD,
        host_key="ssh-ed25519 AAAAhostkey",
        ip="192.0.2.10",
        **extra,
    )
    StackLog.objects.create(
        stack=stack,
        status=status,
        provider=provider,
        course_id=course,
        anonymous_user_id=stack.anonymous_user_id,
        learner=learner,
        created_at=timezone.now() - timedelta(minutes=90),
    )
    return stack


@pytest.fixture
def labs():
    alice = User.objects.create_user("alice", "alice@example.org")
    bob = User.objects.create_user("bob", "bob@example.org")
    now = timezone.now()
    return {
        "up": make_stack("hx-up", states.CREATE_COMPLETE, alice, suspend_by=now + timedelta(seconds=60)),
        "suspended": make_stack("hx-sleeping", states.SUSPEND_COMPLETE, bob, provider="cloud-b"),
        "busy": make_stack("hx-busy", states.LAUNCH_PENDING, None, course="course-v1:Other+X+1"),
    }


@pytest.fixture
def superuser(client):
    admin = User.objects.create_superuser("root", "root@example.org", "pw")
    client.force_login(admin)
    return admin


def test_the_list_shows_status_provider_course_learner_activity_and_usage(client, superuser, labs):
    page = client.get(LIST).content.decode()
    for text in ("hx-up", "CREATE_COMPLETE", "cloud-b", "course-v1:Org+Lab+2026", "alice", "bob", "anon-hx-busy"):
        assert text in page, text
    assert "1:30 h" in page  # usage: up for 90 minutes, from the status history
    StackLog.objects.filter(stack=labs["busy"]).update(error_msg=messages.stored("launch.timeout"))
    logs = client.get("/admin/hastexo_xblock/stacklog/").content.decode()
    assert "Your lab took too long to start." in logs and '"code"' not in logs  # messages as text
    assert "Last activity" in page


def test_filters_and_search(client, superuser, labs):
    page = client.get(LIST, {"state": "suspended"}).content.decode()
    assert "hx-sleeping" in page and "hx-up" not in page
    page = client.get(LIST, {"provider": "cloud-b"}).content.decode()
    assert "hx-sleeping" in page and "hx-busy" not in page
    page = client.get(LIST, {"q": "alice@example.org"}).content.decode()
    assert "hx-up" in page and "hx-sleeping" not in page
    page = client.get(LIST, {"q": "Other+X"}).content.decode()
    assert "hx-busy" in page and "hx-up" not in page


def test_secrets_are_never_shown_not_even_to_superusers(client, superuser, labs):
    pages = [client.get(LIST).content, client.get(f"{LIST}{labs['up'].pk}/change/").content]
    pages.append(client.get("/admin/hastexo_xblock/stacklog/").content)
    for page in pages:
        text = page.decode()
        assert "ADMIN-MUST-NEVER-SHOW-THIS" not in text and PASSWORD not in text
        assert "gAAAA" not in text  # nor the Fernet tokens
    detail = pages[1].decode()
    assert "ssh-ed25519 AAAAhostkey" in detail and "192.0.2.10" in detail  # the public parts are there
    assert "Private key" not in detail and 'name="password"' not in detail
    # Nothing can be changed by hand: a POST to the form changes nothing.
    client.post(f"{LIST}{labs['up'].pk}/change/", {"status": states.DELETE_COMPLETE, "private_key": "x"})
    assert Stack.objects.get(pk=labs["up"].pk).status == states.CREATE_COMPLETE


def act(client, action, *stacks):
    return client.post(LIST, {"action": action, "_selected_action": [s.pk for s in stacks]}, follow=True)


def test_suspend_resume_delete_go_through_the_tasks(client, superuser, labs, sent):
    page = act(client, "suspend_labs", labs["up"], labs["busy"]).content.decode()
    assert Stack.objects.get(pk=labs["up"].pk).status == states.SUSPEND_PENDING
    assert ("suspend", labs["up"].pk) in sent
    assert "Skipped" in page and "hx-busy" in page  # a launching lab is left alone
    assert Stack.objects.get(pk=labs["busy"].pk).status == states.LAUNCH_PENDING

    act(client, "resume_labs", labs["suspended"])
    resumed = Stack.objects.get(pk=labs["suspended"].pk)
    assert resumed.status == states.LAUNCH_PENDING and ("launch", resumed.pk, resumed.attempt) in sent

    act(client, "delete_labs", labs["suspended"])  # busy now: skipped
    assert Stack.objects.get(pk=labs["suspended"].pk).status == states.LAUNCH_PENDING
    Stack.objects.filter(pk=labs["suspended"].pk).update(status=states.SUSPEND_COMPLETE)
    act(client, "delete_labs", labs["suspended"])
    assert Stack.objects.get(pk=labs["suspended"].pk).status == states.DELETE_PENDING
    assert ("delete", labs["suspended"].pk) in sent
    assert Stack.objects.count() == 3  # the rows stay: the worker deletes the lab, not the admin


def test_staff_without_the_change_permission_may_look_but_not_act(client, labs, sent):
    staff = User.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_stack"))
    client.force_login(staff)
    page = client.get(LIST).content.decode()
    assert "hx-up" in page and "suspend_labs" not in page
    act(client, "suspend_labs", labs["up"])
    assert Stack.objects.get(pk=labs["up"].pk).status == states.CREATE_COMPLETE and not sent
