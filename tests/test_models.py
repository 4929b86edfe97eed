"""The stack record on a real database: atomic transitions, the log, encryption at rest."""

import threading

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.db import connection

from hastexo_xblock import secrets, states
from hastexo_xblock.models import Stack, StackLog, transition

pytestmark = [pytest.mark.db, pytest.mark.django_db(transaction=True)]

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-material\n-----END OPENSSH PRIVATE KEY-----\n"


def make_stack(**fields):
    values = dict(name="hx-c-l", course_id="c", anonymous_user_id="l")
    values.update(fields)
    return Stack.objects.create(**values)


def raw_column(stack_id, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM hastexo_xblock_stack WHERE id = %s", [stack_id])
        return cursor.fetchone()[0]


def test_transition_moves_and_logs():
    stack = make_stack()
    assert transition(stack.pk, states.LAUNCH_PENDING, error_msg="")
    assert not transition(stack.pk, states.CREATE_COMPLETE, allowed_from=[states.CREATE_IN_PROGRESS])
    assert transition(stack.pk, states.CREATE_COMPLETE, provider="default")
    stack.refresh_from_db()
    assert stack.status == states.CREATE_COMPLETE and stack.provider == "default"
    assert list(StackLog.objects.filter(stack=stack).values_list("status", flat=True)) == [
        states.LAUNCH_PENDING,
        states.CREATE_COMPLETE,
    ]


def test_transition_refuses_what_the_table_forbids():
    stack = make_stack()
    with pytest.raises(states.InvalidTransition):
        transition(stack.pk, states.RESUME_COMPLETE, allowed_from=[states.DELETE_COMPLETE])


def test_a_stale_attempt_loses():
    stack = make_stack(status=states.LAUNCH_PENDING, attempt=3)
    assert not transition(stack.pk, states.CREATE_COMPLETE, if_attempt=2)
    assert transition(stack.pk, states.CREATE_COMPLETE, if_attempt=3)


def test_concurrent_claims_have_exactly_one_winner():
    stack = make_stack()
    wins = []
    barrier = threading.Barrier(10)

    def claim():
        barrier.wait()
        try:
            wins.append(transition(stack.pk, states.LAUNCH_PENDING, allowed_from=states.LAUNCHABLE))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
    assert StackLog.objects.filter(stack=stack, status=states.LAUNCH_PENDING).count() == 1


def test_secrets_are_encrypted_at_rest():
    stack = make_stack(private_key=KEY, password="hunter2")
    assert "secret-material" not in raw_column(stack.pk, "private_key")
    assert "hunter2" not in raw_column(stack.pk, "password")
    assert Stack.objects.get(pk=stack.pk).private_key == KEY
    # update() (the path transition() takes) encrypts too.
    Stack.objects.filter(pk=stack.pk).update(private_key=KEY + "2")
    assert "secret-material" not in raw_column(stack.pk, "private_key")
    assert Stack.objects.get(pk=stack.pk).private_key == KEY + "2"


def test_keys_can_be_rotated(hastexo_settings):
    old = Fernet.generate_key().decode()
    new = Fernet.generate_key().decode()
    hastexo_settings(encryption_keys=[old])
    stack = make_stack(private_key=KEY)
    token_old = raw_column(stack.pk, "private_key")
    hastexo_settings(encryption_keys=[new, old])
    assert Stack.objects.get(pk=stack.pk).private_key == KEY  # old key still decrypts
    from django.core.management import call_command

    call_command("hastexo_rotate_keys")
    token_new = raw_column(stack.pk, "private_key")
    assert token_new != token_old
    hastexo_settings(encryption_keys=[new])
    assert Stack.objects.get(pk=stack.pk).private_key == KEY
    with pytest.raises(secrets.InvalidToken):
        hastexo_settings(encryption_keys=[old])
        Stack.objects.get(pk=stack.pk)


def test_deleting_a_user_keeps_the_lab_record():
    user = get_user_model().objects.create(username="retiring")
    stack = make_stack(learner=user)
    transition(stack.pk, states.LAUNCH_PENDING)
    user.delete()
    stack.refresh_from_db()
    assert stack.learner is None
    assert StackLog.objects.get(stack=stack).learner is None


def test_one_stack_per_learner_per_course():
    from django.db import IntegrityError

    make_stack()
    with pytest.raises(IntegrityError):
        make_stack(name="hx-other")


def test_repr_never_shows_secrets():
    stack = make_stack(private_key=KEY)
    assert "secret" not in repr(stack) and "secret" not in str(stack)
