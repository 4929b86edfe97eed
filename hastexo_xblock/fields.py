"""The lab's author fields, defined once: name, type, default, label, help, choices, OLX form, and value rules.

Everything that needs to know the author fields reads them from here:
``block.py`` builds the XBlock fields from :data:`FIELDS`, ``olx.py`` its
attribute and child-element tables and ``authoring.py`` its Studio labels,
defaults and checks.  The value rules (:func:`to_bool`, :func:`to_int`,
:func:`to_float`, :func:`port`, :func:`provider`, :func:`hook_events`) are
the same for an OLX import and a Studio save, and they raise
:class:`FieldValueError` without knowing where the value came from; the
caller adds that (the OLX element, the Studio label).  Which ports a lab
offers (:func:`offered_ports`, :func:`port_offered`) is decided here too, for
the block, the lab's ticket and the gateway.

The YAML an author writes (Studio's text boxes, OLX options) is read with
:func:`load_yaml`: PyYAML's safe loader without aliases and with nesting
limited, since its composer recurses (``[`` 5,000 deep raised
``RecursionError``) and aliases can make a small text a huge value.

Pure: PyYAML only; no XBlock, no Django, no lxml.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

_ = lambda text: text  # noqa: E731 -- marks strings for extraction; translated where shown

Kind = Literal["text", "choice", "int", "float", "bool", "list", "mapping"]


@dataclass(frozen=True)
class LabField:
    """One author field of the lab.

    ``kind`` is the value's type (``list`` and ``mapping`` are the structured
    fields, edited as YAML in Studio and written as JSON in OLX);
    ``element`` is the plain OLX child element that also fills a structured
    field (``<test>``, ``<port>``…); ``studio`` says whether Studio's form
    offers it; ``content`` puts it in the content scope (the tests, which
    belong to the course's content, as in the original).
    """

    name: str
    kind: Kind
    default: Any
    label: str
    help: str = ""
    choices: tuple[str, ...] = ()
    element: str | None = None
    studio: bool = True
    content: bool = False

    @property
    def structured(self) -> bool:
        return self.kind in ("list", "mapping")


HOOK_EVENTS = ("suspend", "resume", "delete")
PORT_KEYS = ("name", "number")
PROVIDER_KEYS = ("name", "capacity", "template", "environment")

#: The author fields in Studio's form order (``provider``, the original's deprecated one, is not in the form).
FIELDS: tuple[LabField, ...] = (
    LabField("display_name", "text", _("Lab"), _("Display name"), _("Title of the lab unit")),
    LabField(
        "weight",
        "float",
        1,
        _("Weight"),
        _("Points this lab is worth: a learner earns the share of tests passed (a lab without tests is not graded)"),
    ),
    LabField(
        "stack_template_path",
        "text",
        "",
        _("Template path"),
        _("Template file in the course's files (Files & Uploads)"),
    ),
    LabField("stack_user_name", "text", "", _("Lab user name"), _("User name to log in to the lab as")),
    LabField(
        "stack_protocol", "choice", "ssh", _("Protocol"), _("How the learner reaches the lab"), ("ssh", "rdp", "vnc")
    ),
    LabField(
        "stack_key_type",
        "choice",
        "",
        _("Key type"),
        _("Key pair the worker makes for the lab ('' if the template makes its own)"),
        ("", "rsa", "ed25519"),
    ),
    LabField(
        "providers",
        "list",
        [],
        _("Providers"),
        _("YAML list, in order: - {name: NAME, capacity: N, template: PATH, environment: PATH}"),
        element="provider",
    ),
    LabField(
        "ports",
        "list",
        [],
        _("Ports"),
        _("YAML list of ports the learner may choose, e.g. - {name: Desktop, number: 5901}"),
        element="port",
    ),
    LabField(
        "tests",
        "list",
        [],
        _("Tests"),
        _("YAML list of scripts run on the lab by Check Progress; exit 0 passes, standard error is the hint"),
        element="test",
        content=True,
    ),
    LabField(
        "hook_script",
        "text",
        "",
        _("Hook script"),
        _("Script in the course's files run on the lab with the event as argument"),
    ),
    LabField(
        "hook_events",
        "mapping",
        {},
        _("Hook events"),
        _("YAML mapping of events the hook runs on, e.g. {suspend: true, resume: true, delete: false}"),
        element="hook_events",
    ),
    LabField(
        "launch_timeout",
        "int",
        None,
        _("Launch timeout"),
        _("Seconds a launch may take (empty: the platform's setting)"),
    ),
    LabField(
        "suspend_timeout",
        "int",
        None,
        _("Suspend timeout"),
        _("Idle seconds before the lab is suspended (empty: the platform's setting)"),
    ),
    LabField(
        "delete_age",
        "int",
        None,
        _("Delete age"),
        _("Seconds a suspended lab is kept before deletion (empty: the platform's setting)"),
    ),
    LabField("read_only", "bool", False, _("Read-only"), _("Show the lab without accepting input")),
    LabField("hidden", "bool", False, _("Hidden"), _("Launch the lab in the background without showing it")),
    LabField(
        "enable_fullscreen",
        "choice",
        "inherit",
        _("Full screen"),
        _("Offer a full-window view of the lab ('inherit' follows the platform's setting)"),
        ("true", "false", "inherit"),
    ),
    LabField("progress_check_label", "text", _("Check Progress"), _("Check button label")),
    LabField("show_feedback", "bool", True, _("Show feedback"), _("Tell the learner how many tasks they completed")),
    LabField("show_hints_on_error", "bool", True, _("Show hints"), _("Show the failing tests' hints")),
    LabField("progress_check_result_heading", "text", _("Progress check result"), _("Result heading")),
    LabField(
        "provider",
        "text",
        "",
        _("Provider (deprecated)"),
        _("The original's single provider name; used only when Providers is empty"),
        studio=False,
    ),
)

BY_NAME: dict[str, LabField] = {spec.name: spec for spec in FIELDS}
NAMES = frozenset(BY_NAME)
STUDIO_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELDS if spec.studio)
STRUCTURED = frozenset(spec.name for spec in FIELDS if spec.structured)
CHOICES: dict[str, tuple[str, ...]] = {spec.name: spec.choices for spec in FIELDS if spec.kind == "choice"}


def names_of(*kinds: Kind) -> frozenset[str]:
    """The names of the fields of the given kinds."""
    return frozenset(spec.name for spec in FIELDS if spec.kind in kinds)


class FieldValueError(ValueError):
    """A value a field cannot hold; ``problem`` says why, ``attribute`` names the key or attribute, if any."""

    def __init__(self, problem: str, attribute: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.attribute = attribute


# --- scalar values ---------------------------------------------------------------------

# YAML 1.1's booleans (PyYAML's), which is how the original read attributes and options.
_YAML_TRUE = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
_YAML_FALSE = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})


def to_bool(value: Any, attribute: str | None = None) -> bool:
    """A boolean as the original read it: YAML 1.1 words, or a whole number (non-zero is true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip()
        if text in _YAML_TRUE:
            return True
        if text in _YAML_FALSE:
            return False
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text) != 0
    raise FieldValueError(f"expected true or false, got {value!r}", attribute)


def to_int(value: Any, attribute: str | None = None) -> int:
    """A whole number, or the text of one (``true`` is a mistake, not 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii() and len(text) < 20:
            return int(text)
    raise FieldValueError(f"expected a whole number, got {value!r}", attribute)


def to_float(value: Any, attribute: str | None = None) -> float:
    """A finite number, or the text of one."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise FieldValueError(f"expected a number, got {value!r}", attribute) from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise FieldValueError(f"expected a finite number, got {value!r}", attribute)
    return number


def optional_text(value: Any, attribute: str) -> str | None:
    """Text (a number counts as its text); ``None`` for nothing."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise FieldValueError(f"expected text, got {value!r}", attribute)


# --- structured values -----------------------------------------------------------------


def unknown_keys(raw: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise FieldValueError(f"unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(unknown)}")


def port(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A port entry ``{name?, number}``: ``number`` required, a whole number in 1–65535."""
    unknown_keys(raw, PORT_KEYS)
    if raw.get("number") in (None, ""):
        raise FieldValueError("a port needs a number", "number")
    number = to_int(raw["number"], "number")
    if not 1 <= number <= 65535:
        raise FieldValueError(f"port number must be in 1–65535, got {number}", "number")
    result: dict[str, Any] = {}
    name = optional_text(raw.get("name"), "name")
    if name is not None:
        result["name"] = name
    result["number"] = number
    return result


def provider(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A provider entry ``{name, capacity, template, environment}`` (all four keys, ``None`` when not given).

    ``capacity`` missing, ``""`` or ``"None"`` means -1 (no limit); otherwise
    a whole number ≥ -1.  Whether the platform configures the provider is
    the caller's question (an OLX import warns, Studio reports it).
    """
    unknown_keys(raw, PROVIDER_KEYS)
    name = optional_text(raw.get("name"), "name")
    if name is None:
        raise FieldValueError("a provider needs a name", "name")
    capacity_raw = raw.get("capacity")
    if capacity_raw in (None, "", "None"):
        capacity = -1
    else:
        capacity = to_int(capacity_raw, "capacity")
        if capacity < -1:
            raise FieldValueError(f"capacity must be -1 (no limit) or more, got {capacity}", "capacity")
    # "None" is how the original's export spelled a missing template or environment.
    template, environment = (None if raw.get(key) == "None" else raw.get(key) for key in ("template", "environment"))
    return {
        "name": name,
        "capacity": capacity,
        "template": optional_text(template, "template"),
        "environment": optional_text(environment, "environment"),
    }


def hook_events(raw: Mapping[str, Any]) -> dict[str, bool]:
    """A mapping of events to booleans, with every event: one it leaves out is false (the original's reading).

    An empty mapping stays empty: no hook runs.
    """
    unknown_keys(raw, HOOK_EVENTS)
    if not raw:
        return {}
    return {event: to_bool(raw[event], event) if event in raw else False for event in HOOK_EVENTS}


# --- YAML ---------------------------------------------------------------------------------

#: Nesting an author's YAML (or OLX JSON) value may have; the deepest sound one (providers) has 2.
MAX_DEPTH = 32


class _AuthorYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases and nesting deeper than :data:`MAX_DEPTH`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """``text`` as YAML (safe types only), without aliases, nested at most :data:`MAX_DEPTH` deep.

    Raises ``yaml.YAMLError`` (a ``MarkedYAMLError`` with the line and column
    for the refusals above) for anything else.
    """
    return yaml.load(text, Loader=_AuthorYamlLoader)  # noqa: S506 -- a SafeLoader


# --- Studio's form -----------------------------------------------------------------------


def from_studio(name: str, value: Any) -> Any:
    """A value from Studio's form (``studio_edit.js``) for field ``name``, type-checked; YAML text stays text.

    The form sends text for text and choice fields, a number or ``null`` for
    numbers (an empty or unreadable box is ``null``), ``true``/``false`` for
    booleans and the YAML text of structured fields (an API client may send
    the list or mapping itself).  Raises :class:`FieldValueError` for
    anything else: a value of the wrong type is refused, not converted.  The
    rules between fields are :func:`authoring.validate`'s.
    """
    spec = BY_NAME.get(name)
    if spec is None or not spec.studio:
        raise FieldValueError(f"{name!r} is not a field Studio edits")
    kind = spec.kind
    if kind in ("text", "choice"):
        ok = isinstance(value, str) and len(value) <= 10_000
    elif kind == "int":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53)
    elif kind == "float":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        ok = value is None or (number and math.isfinite(value) and abs(value) < 1e15)
    elif kind == "bool":
        ok = isinstance(value, bool)
    else:
        container = list if kind == "list" else dict
        ok = isinstance(value, str | container)
    if not ok:
        expected = {
            "text": "text",
            "choice": "text",
            "int": "a whole number or empty",
            "float": "a number or empty",
            "bool": "true or false",
            "list": "YAML text",
            "mapping": "YAML text",
        }[kind]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise FieldValueError(f"expected {expected}, got {shown}")
    return value


# --- offered ports -------------------------------------------------------------------------


def offered_entries(entries: Any) -> list[dict[str, Any]]:
    """The entries of a lab's ``ports`` value that offer a port: mappings whose ``number`` is a port number.

    The one rule of which ports a lab offers: the port selector lists these,
    and only their numbers may be chosen (:func:`port_offered`).  Anything
    but a list offers nothing; entries that are not sound are skipped.
    """
    offered = []
    for entry in entries if isinstance(entries, list | tuple) else []:
        if not isinstance(entry, Mapping):
            continue
        try:
            offered.append(port(entry))
        except FieldValueError:
            continue
    return offered


def offered_ports(entries: Any) -> frozenset[int]:
    """The port numbers of :func:`offered_entries`."""
    return frozenset(entry["number"] for entry in offered_entries(entries))


def port_offered(number: Any, entries: Any) -> bool:
    """Whether ``number`` may be used with a lab whose ``ports`` value is ``entries``.

    ``None`` (the lab's default endpoint) always may; otherwise it must be a
    whole number (not a boolean) among :func:`offered_ports`.
    """
    if number is None:
        return True
    return isinstance(number, int) and not isinstance(number, bool) and number in offered_ports(entries)


def known_provider_problem(name: str, known_providers: Collection[str] | None) -> str | None:
    """The problem with provider ``name`` on a platform configuring ``known_providers``; ``None`` if none."""
    if known_providers is None or name in known_providers:
        return None
    configured = ", ".join(sorted(known_providers)) or "none"
    return f"provider {name} is not configured here (configured: {configured})"
