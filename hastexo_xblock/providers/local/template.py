"""Local lab templates: the YAML an author writes for the local provider, parsed and checked strictly.

A template names files to place in the learner's home and a setup script run
once, inside the lab's sandbox, when the lab is created::

    description: Linux basics          # optional
    files:                             # optional
      - path: welcome.txt              # relative to the home directory
        content: |
          Welcome!
        mode: "0644"                   # optional, a quoted octal string
    setup: |                           # optional: bash, run in the home directory
      mkdir -p projects
    desktop:                           # optional: a graphical desktop (VNC), or just "desktop: true"
      geometry: 1280x800               # optional, the screen's size
      startup: |                       # optional: bash, run in the desktop whenever it starts
        twm & xterm &

This module does not import Django or XBlock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..base import TemplateError

PARAM_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
MODE_RE = re.compile(r"^0?[0-7]{3,4}$")

TEMPLATE_KEYS = frozenset({"description", "files", "setup", "desktop"})
FILE_KEYS = frozenset({"path", "content", "mode"})
DESKTOP_KEYS = frozenset({"geometry", "startup"})
GEOMETRY_RE = re.compile(r"^([1-9][0-9]{2,3})x([1-9][0-9]{2,3})$")
DEFAULT_GEOMETRY = "1280x800"
#: What a desktop runs when the template says no more: a window manager and a terminal.
DEFAULT_STARTUP = "twm &\nxterm -geometry 100x30+40+40 &\n"

#: ``bash -c`` takes the script as one argument; Linux caps one argument at 128 KiB.
MAX_SETUP_BYTES = 100_000


@dataclass(frozen=True)
class TemplateFile:
    """A file the template places in the learner's home (``path`` is relative to it)."""

    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Desktop:
    """A lab's graphical desktop: its screen size and what starts in it."""

    geometry: str = DEFAULT_GEOMETRY
    startup: str = DEFAULT_STARTUP


@dataclass(frozen=True)
class LocalTemplate:
    """A parsed local lab template."""

    description: str = ""
    files: tuple[TemplateFile, ...] = field(default_factory=tuple)
    setup: str = ""
    desktop: Desktop | None = None


def parse_template(text: str) -> LocalTemplate:
    """Parse and strictly validate a local lab template (YAML text).

    Returns a :class:`LocalTemplate`.  An empty document (only comments) is
    a lab with no files and no setup.  Raises :class:`TemplateError` naming
    the offending key or element for invalid YAML, a document that is not a
    mapping, unknown keys, a file path that is absolute or leaves the home
    directory, a mode that is not an octal string, or a setup that is not a
    string (or is too long).
    """
    if not isinstance(text, str):
        raise TemplateError("the local lab template must be YAML text")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"the local lab template is not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise TemplateError("the local lab template is nested too deep") from None
    if doc is None:
        return LocalTemplate()
    if not isinstance(doc, dict):
        raise TemplateError("the local lab template must be a YAML mapping (with description, files, setup)")
    unknown = sorted(str(k) for k in doc if k not in TEMPLATE_KEYS)
    if unknown:
        raise TemplateError(
            f"unknown key(s) in the local lab template: {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(TEMPLATE_KEYS))})"
        )
    description = doc.get("description")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise TemplateError("template key 'description' must be a string")
    setup = doc.get("setup")
    if setup is None:
        setup = ""
    if not isinstance(setup, str):
        raise TemplateError("template key 'setup' must be a string (a shell script)")
    if "\0" in setup:
        raise TemplateError("template key 'setup' must not contain NUL characters")
    if len(setup.encode("utf-8")) > MAX_SETUP_BYTES:
        raise TemplateError(f"template key 'setup' is longer than {MAX_SETUP_BYTES} bytes")
    files_doc = doc.get("files")
    if files_doc is None:
        files_doc = []
    if not isinstance(files_doc, list):
        raise TemplateError("template key 'files' must be a list")
    files: list[TemplateFile] = []
    seen: set[str] = set()
    for index, entry in enumerate(files_doc):
        where = f"files[{index}]"
        if not isinstance(entry, dict):
            raise TemplateError(f"template element {where} must be a mapping with path, content, mode")
        unknown = sorted(str(k) for k in entry if k not in FILE_KEYS)
        if unknown:
            raise TemplateError(f"unknown key(s) in template element {where}: {', '.join(unknown)}")
        path = check_relative_path(entry.get("path"), f"{where}.path")
        if path in seen:
            raise TemplateError(f"template element {where}.path: {path!r} is listed twice")
        seen.add(path)
        content = entry.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise TemplateError(f"template element {where}.content must be a string")
        mode = entry.get("mode", "0644")
        if not isinstance(mode, str) or not MODE_RE.match(mode):
            raise TemplateError(f'template element {where}.mode must be a quoted octal string such as "0644"')
        files.append(TemplateFile(path=path, content=content, mode=int(mode, 8) & 0o7777))
    return LocalTemplate(description=description, files=tuple(files), setup=setup, desktop=_desktop(doc))


def _desktop(doc: Mapping[str, Any]) -> Desktop | None:
    value = doc.get("desktop")
    if value is None or value is False:
        return None
    if value is True:
        return Desktop()
    if not isinstance(value, dict):
        raise TemplateError("template key 'desktop' must be true, false or a mapping with geometry, startup")
    unknown = sorted(str(k) for k in value if k not in DESKTOP_KEYS)
    if unknown:
        raise TemplateError(f"unknown key(s) in template element desktop: {', '.join(unknown)}")
    geometry = value.get("geometry", DEFAULT_GEOMETRY)
    match = GEOMETRY_RE.match(geometry) if isinstance(geometry, str) else None
    if not match or not (320 <= int(match.group(1)) <= 3840 and 200 <= int(match.group(2)) <= 2160):
        raise TemplateError("template element desktop.geometry must be WIDTHxHEIGHT, from 320x200 to 3840x2160")
    startup = value.get("startup", DEFAULT_STARTUP)
    if not isinstance(startup, str) or "\0" in startup or len(startup.encode("utf-8")) > MAX_SETUP_BYTES:
        raise TemplateError("template element desktop.startup must be a shell script")
    return Desktop(geometry=geometry, startup=startup)


def check_relative_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path.strip():
        raise TemplateError(f"template element {where} must be a non-empty string")
    if "\0" in path:
        raise TemplateError(f"template element {where} must not contain NUL characters")
    if path.startswith("/"):
        raise TemplateError(f"template element {where} must be relative to the home directory, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise TemplateError(f"template element {where} must stay inside the home directory (no '..')")
    return "/".join(parts)


def parse_parameters(parameters: Mapping[str, Any] | None) -> tuple[dict[str, str], str | None]:
    """Return ``(environment for the setup script, public key or None)``.

    Each parameter becomes ``HASTEXO_PARAM_<NAME>``; ``public_key`` (OpenSSH)
    is checked and returned as well.  Raises :class:`TemplateError` for a bad
    name or value.
    """
    env: dict[str, str] = {}
    public_key = None
    for key, value in (parameters or {}).items():
        if not isinstance(key, str) or not PARAM_NAME_RE.match(key):
            raise TemplateError(f"parameter name {key!r} may only contain letters, digits and '_'")
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            text = str(value)
        else:
            raise TemplateError(f"parameter {key!r} must be a string or a number")
        if "\0" in text:
            raise TemplateError(f"parameter {key!r} must not contain NUL characters")
        if key == "public_key" and text:
            public_key = check_public_key(text)
            text = public_key
        env[f"HASTEXO_PARAM_{key.upper()}"] = text
    return env, public_key


def check_public_key(text: str) -> str:
    import asyncssh

    try:
        key = asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise TemplateError(f"parameter 'public_key' is not an OpenSSH public key: {exc}") from None
    return key.export_public_key("openssh").decode("ascii").strip()


def place_files(home: str, files: tuple[TemplateFile, ...], owner: tuple[int, int] | None = None) -> None:
    """Write the template's files into a new, empty home; ``owner`` (uid, gid) then owns them.

    The paths were checked for ``..`` when the template was parsed; this
    also refuses a path that a symlink made by an earlier entry would lead
    out of the home.
    """
    real_home = os.path.realpath(home)
    for item in files:
        target = os.path.join(home, item.path)
        parent = os.path.dirname(target)
        created = []
        walk = parent
        while not os.path.exists(walk):
            created.append(walk)
            walk = os.path.dirname(walk)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if os.path.commonpath([os.path.realpath(parent), real_home]) != real_home:
            raise TemplateError(f"file {item.path!r} would be placed outside the home directory")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, item.mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(item.content)
        os.chmod(target, item.mode)
        if owner:
            for path in [target, *created]:
                os.lchown(path, *owner)
