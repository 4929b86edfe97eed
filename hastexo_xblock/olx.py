"""The ``<hastexo>`` OLX format: parse it into field values, export field values back.

Pure: imports lxml and PyYAML, never XBlock, so the format can be tested and
reused without a runtime.  The block's ``parse_xml``/``add_xml_to_node`` are
thin wrappers around :func:`parse` and :func:`export_into`.

Accepted input (compatible with the original hastexo XBlock):

* attributes on ``<hastexo>`` are fields (``""`` means "unset": the field
  keeps its default); ``providers``, ``ports``, ``tests`` and
  ``hook_events`` attributes hold JSON (or YAML); ``url_name``,
  ``filename``, ``xblock-family`` and the platform's ``x-is-pointer-node``
  are bookkeeping and ignored.  Any other attribute (the platform's own,
  such as ``visible_to_staff_only``, or one of an older release) is
  returned in :attr:`ParsedHastexo.unknown_attributes`, never an error, as
  in the original, which logged it;
* booleans are read as the original read them (through YAML): ``true``,
  ``True``, ``yes``, ``on``, ``1`` and their opposites;
* ``<option:NAME>`` children (namespace :data:`OPTION_NS`) carry JSON or YAML
  for ``providers``, ``ports``, ``tests``, ``hook_events`` (or plain text for
  a scalar field);
* plain ``<test>``, ``<port>``, ``<provider>`` and ``<hook_events>`` children
  (an event ``<hook_events>`` leaves out is true, as in the original);
* any other child element is a child block, returned untouched;
* the pointer form ``<hastexo url_name="…" filename="…"/>``: the content is
  read from ``hastexo/<dir of url_name>/<filename>.xml`` (course-relative)
  and the pointer's own attributes override the file's.

Anything malformed raises :class:`OLXError` naming the element, the attribute
when there is one, and the problem; no value is ever silently dropped.  A
provider the platform does not configure is not malformed: it is reported in
:attr:`ParsedHastexo.warnings` (and by Studio's validation, and at launch).

Export writes every field as an attribute, in sorted order, the structured
ones as JSON, so that ``parse(export(values))`` gives ``values`` back.  It
writes no child elements of its own: Studio's copy/paste and content-library
sync serialize a container, then strip its child elements before the block
parses its node, and import every child element as a child block
(``cms/djangoapps/contentstore/helpers.py``, ``_import_xml_node_to_parent``),
so settings kept in ``<test>``/``<port>``/… children would be lost there.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from lxml import etree

from . import fields

OPTION_NS = "http://code.edx.org/xblock/option"
TAG = "hastexo"
#: The tags of the block: stackamole 9.x (the original, renamed) exported ``<stackamole>``,
#: with its pointer files under ``stackamole/``; the same block reads and writes both.
TAGS = (TAG, "stackamole")

# Field tables, from the one definition of the fields (fields.py).
STRING_FIELDS = fields.names_of("text")
CHOICE_FIELDS: dict[str, tuple[str, ...]] = fields.CHOICES
INT_FIELDS = fields.names_of("int")
FLOAT_FIELDS = fields.names_of("float")
BOOL_FIELDS = fields.names_of("bool")
SCALAR_FIELDS = STRING_FIELDS | set(CHOICE_FIELDS) | INT_FIELDS | FLOAT_FIELDS | BOOL_FIELDS
STRUCTURED_FIELDS = fields.STRUCTURED
FIELD_NAMES = fields.NAMES

# Attributes that are bookkeeping of the course format, not fields.
# ``x-is-pointer-node`` is set by Studio's paste on the node it hands to parse_xml.
IGNORED_ATTRIBUTES = frozenset({"url_name", "filename", "xblock-family", "x-is-pointer-node"})
HOOK_EVENTS = fields.HOOK_EVENTS
# Plain child elements and the field each one fills.
PLAIN_CHILDREN = {spec.element: spec.name for spec in fields.FIELDS if spec.element}

# Characters XML 1.0 cannot hold at all (JSON can, escaped).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Loader = Callable[[str], bytes | str]


class OLXError(ValueError):
    """Malformed ``<hastexo>`` OLX; the message names the element (and attribute) and the problem."""

    def __init__(self, element: Any, problem: str, attribute: str | None = None) -> None:
        self.element = element
        self.attribute = attribute
        self.problem = problem
        where = describe(element)
        if attribute is not None:
            where += f' attribute "{attribute}"'
        super().__init__(f"{where}: {problem}")


def describe(element: Any) -> str:
    """``<tag>`` plus, when known, the line and file it came from — for error messages."""
    if not isinstance(element, etree._Element):
        return str(element)
    try:
        qname = etree.QName(element)
        tag = f"option:{qname.localname}" if qname.namespace == OPTION_NS else qname.localname
    except ValueError:
        tag = str(element.tag)
    text = f"<{tag}>"
    source = []
    if element.sourceline:
        source.append(f"line {element.sourceline}")
    url = element.getroottree().docinfo.URL
    if url:
        source.append(f"of {url}")
    return f"{text} ({' '.join(source)})" if source else text


@dataclass
class ParsedHastexo:
    """The result of :func:`parse`.

    ``fields`` holds only the fields the OLX sets (unset ones keep their
    defaults on the block); ``children`` are the elements that are child
    blocks, in document order; ``source`` is the course-relative path of the
    pointer's file, if one was read.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    children: list[etree._Element] = field(default_factory=list)
    source: str | None = None
    #: Attributes (and ``<option:…>`` values) that are not this block's: name → text, for the caller to keep.
    unknown_attributes: dict[str, str] = field(default_factory=dict)
    #: What the author should know but is no reason to refuse the import (for the log).
    warnings: list[str] = field(default_factory=list)


# --- scalar values -----------------------------------------------------------


# Python's strtobool, which is how the original read <hook_events> attributes.
_STRTOBOOL_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
_STRTOBOOL_FALSE = frozenset({"n", "no", "f", "false", "off", "0"})


def _checked(element: Any, read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)`` (a rule of fields.py); its ``FieldValueError`` becomes an :class:`OLXError` at ``element``."""
    try:
        return read(*args)
    except fields.FieldValueError as error:
        raise OLXError(element, error.problem, error.attribute) from None


def _event_flag(element: Any, value: Any, event: str) -> bool:
    """A ``<hook_events>`` attribute, read as the original did (``strtobool``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _STRTOBOOL_TRUE:
        return True
    if text in _STRTOBOOL_FALSE:
        return False
    raise OLXError(element, f"expected true or false, got {value!r}", event)


def _scalar(element: Any, name: str, value: str) -> tuple[bool, Any]:
    """Convert attribute text for scalar field ``name``: ``(is_set, value)``; ``""`` is unset."""
    if value == "":
        return False, None
    if name in STRING_FIELDS:
        return True, value
    if name in BOOL_FIELDS:
        return True, _checked(element, fields.to_bool, value, name)
    if name in INT_FIELDS:
        return True, _checked(element, fields.to_int, value, name)
    if name in FLOAT_FIELDS:
        return True, _checked(element, fields.to_float, value, name)
    if name == "enable_fullscreen" and value in ("True", "False"):
        # The original block stored a boolean here; keep such OLX importable.
        return True, value.lower()
    choices = CHOICE_FIELDS[name]
    if value not in choices:
        raise OLXError(element, f"expected one of {', '.join(c for c in choices if c)}, got {value!r}", name)
    return True, value


# --- structured values ---------------------------------------------------------


def port(element: Any, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A port entry at ``element`` (see :func:`fields.port`)."""
    return _checked(element, fields.port, raw)


def provider(
    element: Any,
    raw: Mapping[str, Any],
    known_providers: Collection[str] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """A provider entry at ``element`` (see :func:`fields.provider`).

    When ``known_providers`` is given and the entry's name is not in it, a
    warning is added to ``warnings`` (the course still imports: a platform
    without that provider reports it in Studio and at launch).
    """
    entry = _checked(element, fields.provider, raw)
    problem = fields.known_provider_problem(entry["name"], known_providers)
    if problem and warnings is not None:
        warnings.append(f"{describe(element)}: {problem}")
    return entry


def hook_events(element: Any, raw: Mapping[str, Any]) -> dict[str, bool]:
    """A mapping of events to booleans at ``element`` (see :func:`fields.hook_events`)."""
    return _checked(element, fields.hook_events, raw)


def hook_events_element(element: Any) -> dict[str, bool]:
    """A ``<hook_events>`` element: every event, one it leaves out being true (the original's reading)."""
    raw = dict(element.attrib)
    _checked(element, fields.unknown_keys, raw, HOOK_EVENTS)
    return {event: _event_flag(element, raw.get(event, "true"), event) for event in HOOK_EVENTS}


def script_text(element: Any, raw: str | None) -> str:
    """The script of a ``<test>`` element: dedented, one leading newline dropped; empty is an error."""
    text = textwrap.dedent(raw or "")
    if text.startswith("\n"):
        text = text[1:]
    if not text.strip():
        raise OLXError(element, "a test needs a script (the element is empty)")
    return text


def _load_option(element: etree._Element, text: str | None = None, attribute: str | None = None) -> Any:
    """JSON or YAML ``text`` (default: the element's text), JSON first: YAML mangles escaped surrogate pairs."""
    text = element.text if text is None else text
    text = text or ""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for json; YAML says so below
        pass
    try:
        return fields.load_yaml(text)
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise OLXError(element, f"not valid JSON or YAML: {problem}", attribute) from None


def _structured_value(
    element: etree._Element,
    name: str,
    value: Any,
    known_providers: Collection[str] | None,
    attribute: str | None = None,
    warnings: list[str] | None = None,
) -> tuple[bool, Any]:
    """Check a loaded structured value (``providers``, ``ports``, ``tests``, ``hook_events``)."""
    if value is None:
        return False, None
    if name == "hook_events":
        if not isinstance(value, Mapping):
            raise OLXError(element, f"expected a mapping of events to true/false, got {value!r}", attribute)
        return True, hook_events(element, value)
    if not isinstance(value, list):
        raise OLXError(element, f"expected a list, got {value!r}", attribute)
    if name == "tests":
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise OLXError(element, f"each test must be a non-empty script, got {item!r}", attribute)
        return True, list(value)
    for item in value:
        if not isinstance(item, Mapping):
            raise OLXError(element, f"each entry must be a mapping, got {item!r}", attribute)
    if name == "ports":
        return True, [port(element, item) for item in value]
    return True, [provider(element, item, known_providers, warnings) for item in value]


def _option_value(
    element: etree._Element, name: str, known_providers: Collection[str] | None, warnings: list[str]
) -> tuple[bool, Any]:
    if element.get("none") == "true":
        return False, None
    if name in SCALAR_FIELDS:
        return _scalar(element, name, element.text or "")
    return _structured_value(element, name, _load_option(element), known_providers, warnings=warnings)


# --- parse ------------------------------------------------------------------------


def pointer_path(element: etree._Element, directory: str | None = None) -> str:
    """Course-relative path of a pointer's file: ``<tag>/<dir of url_name>/<filename>.xml``.

    ``directory`` is ``hastexo`` or ``stackamole`` (default: the element's own tag).
    """
    directory = directory or (element.tag if element.tag in TAGS else TAG)
    filename = element.get("filename", "")
    url_name = element.get("url_name", "")
    path = posixpath.join(directory, posixpath.dirname(url_name), filename)
    if not path.endswith(".xml"):
        path += ".xml"
    normal = posixpath.normpath(path)
    # The file must stay inside the course's hastexo/ (or stackamole/) directory.
    if normal != path or filename.startswith("/") or not normal.startswith(directory + "/"):
        raise OLXError(element, f"file {path!r} is outside the course's {directory}/ directory", "filename")
    return path


def _read_pointer(element: etree._Element, load_file: Loader | None) -> etree._Element:
    path = pointer_path(element)
    if load_file is None:
        raise OLXError(element, f"points to {path!r} but there is no course directory to read it from", "filename")
    # Its own tag's directory first, then the other: stackamole 9.x read both.
    own = element.tag if element.tag in TAGS else TAG
    for directory in (own, *(tag for tag in TAGS if tag != own)):
        candidate = pointer_path(element, directory)
        try:
            data = load_file(candidate)
        except Exception as error:  # any loader's "not found"/"unreadable" is the same problem to the author
            failure = error
            continue
        path = candidate
        break
    else:
        raise OLXError(element, f"cannot read {path!r}: {failure}", "filename") from None
    if isinstance(data, str):
        data = data.encode("utf-8")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
    try:
        root = etree.fromstring(data, parser=parser, base_url=path)
    except etree.XMLSyntaxError as error:
        raise OLXError(element, f"{path!r} is not well-formed XML: {error}", "filename") from None
    if root.tag not in TAGS:
        raise OLXError(root, f"the root element of {path!r} must be <{TAG}>")
    if root.get("filename"):
        raise OLXError(root, "a pointer's file cannot point to another file", "filename")
    return root


def parse(
    node: etree._Element,
    load_file: Loader | None = None,
    known_providers: Collection[str] | None = None,
) -> ParsedHastexo:
    """Read a ``<hastexo>`` element (inline or pointer form) into field values and child elements.

    ``load_file(path)`` returns the bytes (or text) of a course-relative file;
    it is only called for the pointer form.  ``known_providers``, when given,
    are the provider names a ``<provider>`` may name.  Raises
    :class:`OLXError` for anything malformed; ``node`` is not modified.
    """
    parsed = ParsedHastexo()
    # (element, attribute value) per attribute; the pointer's override the file's.
    attributes: dict[str, tuple[etree._Element, str]] = {}
    elements: list[etree._Element] = []
    if node.get("filename"):
        root = _read_pointer(node, load_file)
        parsed.source = root.getroottree().docinfo.URL
        attributes.update((name, (root, value)) for name, value in root.attrib.items())
        elements.extend(root)
    attributes.update((name, (node, value)) for name, value in node.attrib.items())
    elements.extend(node)

    # Which element supplied each structured field, to refuse conflicting forms.
    given_by: dict[str, etree._Element] = {}

    for name, (element, value) in attributes.items():
        if name in IGNORED_ATTRIBUTES:
            continue
        if name in STRUCTURED_FIELDS:
            if value.strip():
                given_by[name] = element
            is_set, converted = _structured_value(
                element, name, _load_option(element, value, name), known_providers, name, parsed.warnings
            )
        elif name in SCALAR_FIELDS:
            is_set, converted = _scalar(element, name, value)
        else:
            parsed.unknown_attributes[name] = value  # the caller keeps it (and logs it)
            continue
        if is_set:
            parsed.fields[name] = converted

    def claim(field_name: str, element: etree._Element, repeatable: bool) -> None:
        earlier = given_by.get(field_name)
        if earlier is not None and not (repeatable and earlier.tag == element.tag):
            attribute = earlier.get(field_name)
            where = f"the {field_name} attribute of {describe(earlier)}" if attribute else describe(earlier)
            raise OLXError(element, f"{field_name} is already given by {where}")
        given_by[field_name] = element

    for element in elements:
        if not isinstance(element.tag, str):  # comments, processing instructions
            continue
        qname = etree.QName(element)
        if qname.namespace == OPTION_NS:
            name = qname.localname
            if name not in FIELD_NAMES:
                parsed.unknown_attributes[name] = element.text or ""  # as the original: a field of another kind
                continue
            if name in SCALAR_FIELDS and name in attributes:
                raise OLXError(element, f"{name} is also given as an attribute")
            claim(name, element, repeatable=False)
            is_set, value = _option_value(element, name, known_providers, parsed.warnings)
            if is_set:
                parsed.fields[name] = value
            continue
        field_name = PLAIN_CHILDREN.get(element.tag) if qname.namespace is None else None
        if field_name is None:
            parsed.children.append(element)  # a child block (instructions etc.)
            continue
        # <test>, <port>, <provider> repeat; <hook_events> is given once.
        claim(field_name, element, repeatable=element.tag != "hook_events")
        if element.tag == "test":
            if len(element):
                raise OLXError(element, "a test holds script text, not elements")
            parsed.fields.setdefault("tests", []).append(script_text(element, element.text))
        elif element.tag == "port":
            parsed.fields.setdefault("ports", []).append(port(element, dict(element.attrib)))
        elif element.tag == "provider":
            parsed.fields.setdefault("providers", []).append(
                provider(element, dict(element.attrib), known_providers, parsed.warnings)
            )
        else:
            parsed.fields["hook_events"] = hook_events_element(element)
    return parsed


# --- export -------------------------------------------------------------------------


def _attribute_text(value: Any) -> str:
    if value is None:
        return ""  # unset: the field's default on import
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # repr round-trips exactly
    return str(value)


def _set(element: etree._Element, name: str, value: str) -> None:
    try:
        element.set(name, value)
    except ValueError as error:  # characters XML cannot hold
        raise OLXError(element, f"cannot export {value!r}: {error}", name) from None


def _json_attribute(value: Any) -> str:
    """A structured value as attribute text: JSON, readable where XML allows, escaped where it does not."""
    if not value:
        return ""  # unset: the field's empty default on import
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")) if _NOT_XML.search(text) else text


def export_into(
    node: etree._Element,
    values: Mapping[str, Any],
    extra_attributes: Mapping[str, str] | None = None,
    tag: str = TAG,
) -> etree._Element:
    """Write ``values`` (field name → value) onto ``node`` as a ``<hastexo>`` element, and return it.

    Every field becomes an attribute (missing or ``None`` as ``""``; lists
    and mappings as JSON), sorted with ``extra_attributes`` by name.  Nothing
    is written as a child element, so the settings survive Studio's paste
    and library sync, which strip a container's children before parsing it
    (see the module docstring).  The original read this form too: it read
    every attribute through YAML, and JSON is YAML.  Child blocks are the
    caller's to append.
    """
    node.tag = tag  # ``hastexo``, or ``stackamole`` for a block of that type (see TAGS)
    attributes = {name: _attribute_text(values.get(name)) for name in SCALAR_FIELDS}
    attributes.update({name: _json_attribute(values.get(name)) for name in STRUCTURED_FIELDS})
    attributes.update(extra_attributes or {})
    for name in sorted(attributes):
        _set(node, name, attributes[name])
    return node


def export(values: Mapping[str, Any], children_xml: Iterable[etree._Element] = ()) -> etree._Element:
    """A new ``<hastexo>`` element for ``values`` (see :func:`export_into`), then copies of ``children_xml``."""
    node = export_into(etree.Element(TAG), values)
    for child in children_xml:
        node.append(copy.deepcopy(child))
    return node


def loader_for(runtime: Any, fallback: Loader | None = None) -> Loader | None:
    """A :data:`Loader` reading course files through ``runtime.resources_fs`` (Open edX import), else ``fallback``.

    Duck-typed on a PyFilesystem-like ``open(path, "rb")`` so this module
    stays free of XBlock and fs imports.
    """
    resources = getattr(runtime, "resources_fs", None)
    if resources is None:
        return fallback

    def load(path: str) -> bytes:
        with resources.open(path, "rb") as handle:
            return handle.read()

    return load
