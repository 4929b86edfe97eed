"""The demo's shared labs directory must let each lab's user pass through, whatever the umask.

Found by running the demo as root from a fresh clone under /root: the demo's
umask 077 made /var/lib/hastexo_xblock/demo/<digest> 0700, and every lab
failed to start ("the lab's init did not start").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hastexo_xblock.demo.run import make_passable


def test_every_directory_from_the_demo_root_down_is_passable_under_umask_077(tmp_path: Path) -> None:
    top = tmp_path / "hastexo_xblock"
    labs = top / "demo" / "0123456789ab" / "labs"
    outside_mode = stat.S_IMODE(os.stat(tmp_path).st_mode)
    previous = os.umask(0o077)
    try:
        make_passable(str(labs), top=str(top))
    finally:
        os.umask(previous)
    for directory in (top, top / "demo", top / "demo" / "0123456789ab", labs):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o711, directory
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == outside_mode  # nothing above the demo's own root


def test_existing_directories_left_0700_by_an_earlier_run_are_repaired(tmp_path: Path) -> None:
    top = tmp_path / "hastexo_xblock"
    labs = top / "demo" / "0123456789ab" / "labs"
    labs.mkdir(parents=True)
    for directory in (top, top / "demo", top / "demo" / "0123456789ab"):
        directory.chmod(0o700)
    make_passable(str(labs), top=str(top))
    assert stat.S_IMODE(os.stat(top / "demo").st_mode) == 0o711
