"""Fixtures shared by the tests of the switch from the original hastexo XBlock."""

import pytest

from ..test_checks import queued  # noqa: F401 (a fixture: launches and checks recorded, not sent)
from . import db


@pytest.fixture
def original_tables():
    """The original's (empty) tables in the test database, dropped afterwards."""
    db.drop_tables()
    db.create_tables()
    yield
    db.drop_tables()
