"""The ``<hastexo>`` attributes that are not the lab's: the platform's fields, and attributes nobody knows.

``olx.py`` reads the lab's own settings and hands back every other attribute
(:attr:`~hastexo_xblock.olx.ParsedHastexo.unknown_attributes`).  Two kinds
come that way, and neither may be lost (as the original hastexo XBlock
did not lose them):

* fields the platform mixes into every block (``visible_to_staff_only``,
  ``group_access``, ``start``, ``due``, …): set on the block through the
  field's own ``from_string``, as XBlock's default ``parse_xml`` does, and
  written back on export through ``to_string`` when set;
* anything else (an attribute of an older release, a typo, another tool's
  annotation): logged and kept as text in the block's
  ``unknown_attributes``, and written back as it came.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from xblock.fields import Scope

log = logging.getLogger(__name__)

#: Fields that are structure, not settings (and the store of unknown attributes itself).
_NOT_ATTRIBUTES = frozenset({"children", "parent", "unknown_attributes"})
_EXPORTED_SCOPES = (Scope.settings, Scope.content)


def _platform_field(block: Any, name: str, ours: Collection[str]) -> Any:
    field = block.fields.get(name)
    if field is None or name in ours or name in _NOT_ATTRIBUTES or field.scope not in _EXPORTED_SCOPES:
        return None
    return field


def apply(block: Any, attributes: Mapping[str, str], ours: Collection[str], where: str = "<hastexo>") -> None:
    """Set the platform's fields among ``attributes`` on ``block``; keep (and log) the rest."""
    kept: dict[str, str] = {}
    for name, text in attributes.items():
        field = _platform_field(block, name, ours)
        if field is not None:
            try:
                setattr(block, name, field.from_string(text))
                continue
            except Exception as error:  # any field's parser: the value is kept as text instead
                log.warning("%s: attribute %s=%r could not be read (%s); kept as it is", where, name, text, error)
        else:
            log.warning("%s: attribute %s is not a setting of the hastexo block; kept for export", where, name)
        kept[name] = text
    if kept:
        block.unknown_attributes = {**(block.unknown_attributes or {}), **kept}


def export(block: Any, node: Any, ours: Collection[str]) -> None:
    """Write the platform's fields that are set on ``block``, then the kept attributes, onto ``node``."""
    for name, field in block.fields.items():
        if _platform_field(block, name, ours) is not None and field.is_set_on(block):
            node.set(name, field.to_string(field.read_from(block)))
    for name, text in sorted((block.unknown_attributes or {}).items()):
        if name not in node.attrib:
            node.set(name, text)
