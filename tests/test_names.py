"""Stack names: one per (course run, learner), safe for Heat and as a directory name."""

import re

import pytest

from hastexo_xblock import names
from hastexo_xblock.names import MAX_LENGTH, NAME_PATTERN, is_ours, stack_name

HEAT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]*$")


def test_course_run_and_learner_make_the_name():
    name = stack_name("course-v1:hastexo+hx101+2026", "5b7a1cde")
    assert name == "hx-hastexo-hx101-2026-5b7a1cde"
    assert HEAT_NAME.match(name) and is_ours(name)


def test_workbench_has_no_course_key():
    assert stack_name(None, "student_1") == "hx-workbench-student_1"


@pytest.mark.parametrize(
    ("course", "learner"),
    [("course-v1:Org+Ünïcode/../..+run", "a b;c"), ("x" * 300, "y" * 300), ("c", "../../etc/passwd")],
)
def test_unsafe_or_long_input_is_sanitised_and_bounded(course, learner):
    name = stack_name(course, learner)
    assert NAME_PATTERN.match(name) and len(name) <= MAX_LENGTH
    assert "/" not in name and ".." not in name


def test_shortened_names_stay_distinct():
    a = stack_name("c" * 100, "learner-a")
    b = stack_name("c" * 100, "learner-b")
    assert a != b and len(a) == len(b) == MAX_LENGTH


def test_a_learner_is_required():
    with pytest.raises(ValueError):
        stack_name("course", "")


@pytest.mark.parametrize("name", ["hx-a\n", "", "1abc", "a/b", "a" * 256, "hx-ä", None, 5])
def test_one_rule_for_names_refuses_what_a_provider_would_not_take(name):
    from hastexo_xblock.providers.heat import config as heat_config
    from hastexo_xblock.providers.local import statedir

    assert not names.valid(name)
    assert heat_config.NAME_RE is statedir.NAME_RE is names.NAME_PATTERN  # the one definition
