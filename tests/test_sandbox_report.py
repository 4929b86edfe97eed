"""Operators are told what the local labs' sandbox enforces: at a worker's start, and on demand.

A machine without cgroups or loop devices is a fault this machine cannot show
on demand, so those cases use a probe result made for the test; the first
test uses the real probe.
"""

from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command

from hastexo_xblock import tasks
from hastexo_xblock.providers.local import cgroups, probe

from .local.conftest import needs_sandbox

_real_probe = probe._probe


def _without_cgroups_or_images(settings):
    real = _real_probe(settings)
    return probe.Capabilities(
        bwrap=real.bwrap,
        bwrap_problem=real.bwrap_problem,
        bwrap_features=real.bwrap_features,
        slirp4netns=real.slirp4netns,
        tun_problem=real.tun_problem,
        homefs_problem="the worker is not root (mounting a file system image needs root)",
        cgroups=cgroups.Placement(
            problems={f: "cannot create /sys/fs/cgroup/x: Permission denied" for f in cgroups.FEATURES}
        ),
    )


@pytest.fixture
def probed(monkeypatch):
    """Forget what the probe found so far (``needs_sandbox`` probes, too), here and after ``without``."""
    monkeypatch.setattr(probe, "_probes", {})

    class Probed:
        @staticmethod
        def without_cgroups_or_images() -> None:
            monkeypatch.setattr(probe, "_probe", _without_cgroups_or_images)
            monkeypatch.setattr(probe, "_probes", {})

    return Probed


def test_check_sandbox_command_lists_what_is_enforced(hastexo_settings, probed, tmp_path, capsys):
    needs_sandbox()
    hastexo_settings(providers={"default": {"type": "local", "root": str(tmp_path / "labs")}})
    call_command("hastexo_check_sandbox")
    out = capsys.readouterr().out
    assert "provider default (sandbox auto, network none" in out
    assert "enforced: namespaces of their own" in out
    assert "enforced: no network" in out


def test_check_sandbox_command_names_what_is_not_enforced(hastexo_settings, probed, tmp_path, capsys):
    needs_sandbox()
    probed.without_cgroups_or_images()
    hastexo_settings(providers={"default": {"type": "local", "root": str(tmp_path / "labs")}})
    call_command("hastexo_check_sandbox")
    out = capsys.readouterr().out
    assert "NOT enforced: the memory limit: cannot create /sys/fs/cgroup/x: Permission denied" in out
    assert "NOT enforced: the home size limit: the worker is not root" in out
    assert "enforced: 512 processes" in out  # RLIMIT_NPROC needs no cgroup


def test_check_sandbox_command_fails_when_labs_would_be_refused(
    hastexo_settings, probed, monkeypatch, tmp_path, capsys
):
    real_which = probe.shutil.which
    monkeypatch.setattr(probe.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    hastexo_settings(providers={"default": {"type": "local", "root": str(tmp_path / "labs")}})
    with pytest.raises(CommandError, match="default"):
        call_command("hastexo_check_sandbox")
    assert "MISSING (labs are refused): bubblewrap cannot build a lab sandbox here: bwrap is not installed" in (
        capsys.readouterr().out
    )


def test_a_starting_worker_says_what_is_not_enforced(hastexo_settings, probed, tmp_path, caplog):
    needs_sandbox()
    probed.without_cgroups_or_images()
    hastexo_settings(providers={"default": {"type": "local", "root": str(tmp_path / "labs")}})
    with caplog.at_level(logging.WARNING, logger="hastexo_xblock.providers.local"):
        tasks.report_local_sandboxes()
        tasks.report_local_sandboxes()  # the same process again: said once
    said = [r.getMessage() for r in caplog.records if "does not enforce" in r.getMessage()]
    assert len(said) == 1
    for what in ("the memory limit", "the CPU limit", "the home size limit", "freezing a suspended lab"):
        assert what in said[0]
