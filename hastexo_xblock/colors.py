"""Terminal colour schemes: the four named ones, and custom schemes in Guacamole's format.

The original hastexo XBlock handed ``terminal_color_scheme`` to Guacamole,
which accepts either a named scheme (``white-black``, ``black-white``,
``gray-black``, ``green-black``: foreground-background) or a list of
``NAME: VALUE`` pairs separated by semicolons, for example::

    foreground: rgb:ff/ff/ff; background: rgb:00/00/00; color9: rgb:80/00/80

``NAME`` is ``foreground``, ``background`` or ``colorN`` (N from 0 to 255,
the terminal's palette).  ``VALUE`` is an X11 colour ``rgb:R/G/B`` (one to
four hex digits per component) or ``colorN``, which copies a palette entry
(as set so far, else the standard palette).

:func:`theme` turns a custom scheme into the theme object xterm.js takes
(``foreground``, ``background``, ``cursor``, the sixteen ANSI colour names
and ``extendedAnsi`` for 16–255), with every colour as ``#rrggbb``, so the
page never receives operator text to interpret.  Pure: no Django, no XBlock.
"""

from __future__ import annotations

import re

NAMED = ("white-black", "black-white", "gray-black", "green-black")

#: xterm.js theme keys for palette entries 0–15.
ANSI_KEYS = (
    "black",
    "red",
    "green",
    "yellow",
    "blue",
    "magenta",
    "cyan",
    "white",
    "brightBlack",
    "brightRed",
    "brightGreen",
    "brightYellow",
    "brightBlue",
    "brightMagenta",
    "brightCyan",
    "brightWhite",
)

# xterm's standard first sixteen colours (what ``colorN`` resolves to when the scheme does not set N).
_BASE16 = (
    (0x00, 0x00, 0x00),
    (0xCD, 0x00, 0x00),
    (0x00, 0xCD, 0x00),
    (0xCD, 0xCD, 0x00),
    (0x00, 0x00, 0xEE),
    (0xCD, 0x00, 0xCD),
    (0x00, 0xCD, 0xCD),
    (0xE5, 0xE5, 0xE5),
    (0x7F, 0x7F, 0x7F),
    (0xFF, 0x00, 0x00),
    (0x00, 0xFF, 0x00),
    (0xFF, 0xFF, 0x00),
    (0x5C, 0x5C, 0xFF),
    (0xFF, 0x00, 0xFF),
    (0x00, 0xFF, 0xFF),
    (0xFF, 0xFF, 0xFF),
)

_ENTRY = re.compile(r"^\s*(foreground|background|color(\d{1,3}))\s*:\s*(\S.*?)\s*$", re.IGNORECASE)
_RGB = re.compile(r"^rgb:([0-9a-f]{1,4})/([0-9a-f]{1,4})/([0-9a-f]{1,4})$", re.IGNORECASE)
_REF = re.compile(r"^color(\d{1,3})$", re.IGNORECASE)

RGB = tuple[int, int, int]


class ColorSchemeError(ValueError):
    """A custom colour scheme that cannot be read; the message says which part and why."""


def standard_palette() -> list[RGB]:
    """The 256-colour xterm palette: 16 base colours, the 6×6×6 cube, 24 greys."""
    palette = list(_BASE16)
    levels = (0, 95, 135, 175, 215, 255)
    palette += [(levels[r], levels[g], levels[b]) for r in range(6) for g in range(6) for b in range(6)]
    palette += [(8 + 10 * i,) * 3 for i in range(24)]
    return palette


def _component(digits: str) -> int:
    # X11: n hex digits give a fraction of (16**n - 1); scale it to 0–255.
    return round(int(digits, 16) * 255 / (16 ** len(digits) - 1))


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _index(text: str, where: str) -> int:
    number = int(text)
    if number > 255:
        raise ColorSchemeError(f"{where}: palette entries go from color0 to color255")
    return number


def is_named(scheme: str) -> bool:
    """Whether ``scheme`` is one of the four named schemes."""
    return scheme in NAMED


def parse(scheme: str) -> tuple[RGB | None, RGB | None, dict[int, RGB]]:
    """Read a custom scheme: ``(foreground, background, {palette index: colour})``.

    Raises :class:`ColorSchemeError` for an empty scheme, an unknown name or
    a value that is neither ``rgb:R/G/B`` nor ``colorN``.
    """
    palette = standard_palette()
    foreground: RGB | None = None
    background: RGB | None = None
    changed: dict[int, RGB] = {}
    parts = [part for part in scheme.split(";") if part.strip()]
    if not parts:
        raise ColorSchemeError("empty colour scheme")
    for part in parts:
        match = _ENTRY.match(part)
        if not match:
            raise ColorSchemeError(
                f"{part.strip()!r}: expected NAME: VALUE, with NAME foreground, background or color0 … color255"
            )
        name, index_text, value = match.group(1).lower(), match.group(2), match.group(3)
        rgb_match = _RGB.match(value)
        ref_match = _REF.match(value)
        if rgb_match:
            colour = tuple(_component(digits) for digits in rgb_match.groups())
        elif ref_match:
            colour = palette[_index(ref_match.group(1), part.strip())]
        else:
            raise ColorSchemeError(f"{part.strip()!r}: a colour is rgb:RR/GG/BB or colorN")
        if name == "foreground":
            foreground = colour  # type: ignore[assignment]
        elif name == "background":
            background = colour  # type: ignore[assignment]
        else:
            index = _index(index_text, part.strip())
            palette[index] = colour  # type: ignore[assignment]
            changed[index] = colour  # type: ignore[assignment]
    return foreground, background, changed


def theme(scheme: str) -> dict[str, object]:
    """The xterm.js theme for custom ``scheme`` (see :func:`parse`); ``#rrggbb`` colours only.

    Unset foreground and background are palette entries 7 and 0, as in
    Guacamole.  Raises :class:`ColorSchemeError`.
    """
    foreground, background, changed = parse(scheme)
    palette = standard_palette()
    for index, colour in changed.items():
        palette[index] = colour
    fg = foreground or palette[7]
    bg = background or palette[0]
    result: dict[str, object] = {
        "foreground": _hex(fg),
        "background": _hex(bg),
        "cursor": _hex(fg),
        "cursorAccent": _hex(bg),
        "selectionBackground": "rgba({}, {}, {}, 0.3)".format(*fg),
    }
    for index, key in enumerate(ANSI_KEYS):
        result[key] = _hex(palette[index])
    if any(index >= 16 for index in changed):
        result["extendedAnsi"] = [_hex(colour) for colour in palette[16:]]
    return result
