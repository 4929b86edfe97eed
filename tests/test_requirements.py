"""The package's requirements accept every Open edX release's own pins (requirements/platform-*.txt).

Fast and without installing anything; ``make test-pins`` then installs each
release's pins, the package on top, and runs the suite there.
"""

from __future__ import annotations

import pathlib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REQUIREMENTS = pathlib.Path(__file__).parent.parent / "requirements"
RELEASES = sorted(path.stem.removeprefix("platform-") for path in REQUIREMENTS.glob("platform-*.txt"))


def lines(path: pathlib.Path) -> list[str]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(line)
    return found


def pins(release: str) -> dict[str, str]:
    return {
        canonicalize_name(name): version
        for name, version in (line.split("==") for line in lines(REQUIREMENTS / f"platform-{release}.txt"))
    }


def test_the_supported_releases_are_there():
    assert {"ulmo", "sumac"} <= set(RELEASES)
    assert pins("ulmo")["django"].startswith("5.2.") and pins("sumac")["django"].startswith("4.2.")


@pytest.mark.parametrize("release", RELEASES)
def test_every_runtime_requirement_accepts_the_releases_pin(release):
    pinned = pins(release)
    refused = []
    for requirement in map(Requirement, lines(REQUIREMENTS / "base.in")):
        version = pinned.get(canonicalize_name(requirement.name))
        if version is not None and not requirement.specifier.contains(version, prereleases=True):
            refused.append(f"{requirement} refuses {release}'s {requirement.name}=={version}")
    assert refused == []


def test_web_fragments_is_left_to_xblock():
    """XBlock 6.2+ ships its own web_fragments; requiring the web-fragments package would clash with it."""
    names = {canonicalize_name(Requirement(line).name) for line in lines(REQUIREMENTS / "base.in")}
    assert "web-fragments" not in names
