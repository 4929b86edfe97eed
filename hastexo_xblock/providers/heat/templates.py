"""HOT templates and environments: parsed safely, their declared parameters read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..base import TemplateError


class _HotLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that keeps timestamps as strings.

    ``heat_template_version: 2018-08-31`` is a YAML date; ``safe_load`` would
    turn it into a ``datetime.date``, which is not JSON and not what Heat
    expects.  Heat's own parser makes the same exception.
    """


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_HotLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def parse_document(text: str | None, what: str) -> dict[str, Any] | None:
    """Parse a HOT template or environment (YAML or JSON text) into a dict.

    Returns ``None`` for ``None`` or an empty document.  Raises
    :class:`TemplateError` naming ``what`` ("template", "environment") for
    text that is not valid YAML/JSON or is not a mapping.  Safe: the loader
    is a ``SafeLoader`` (only plain data types can come out).
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TemplateError(f"the Heat {what} must be YAML or JSON text")
    try:
        doc = yaml.load(text, Loader=_HotLoader)  # noqa: S506 - _HotLoader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"the Heat {what} is not valid YAML or JSON: {exc}") from None
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise TemplateError(f"the Heat {what} must be a mapping")
    return doc


def declared_parameters(template: Mapping[str, Any]) -> set[str]:
    """Names of the parameters ``template`` declares (HOT ``parameters`` or CFN ``Parameters``)."""
    params = template.get("parameters")
    if params is None:
        params = template.get("Parameters")
    return {str(key) for key in params} if isinstance(params, dict) else set()
