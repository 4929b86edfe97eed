"""Fixtures shared by the tests of the switch from the original hastexo XBlock."""

from ..test_checks import queued  # noqa: F401 (a fixture: launches and checks recorded, not sent)
