"""Studio authoring: check an author's field values before they are saved; helpers for the author view.

Pure: imports PyYAML and :mod:`fields`, never XBlock.  Values are checked with
the rules an OLX import uses (:func:`fields.port`, :func:`fields.provider`,
…), so whatever Studio accepts also exports and imports.  Every message
starts with the field's Studio label (:data:`FIELD_LABELS`, from :mod:`fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from . import fields

CHILD_BLOCK_TYPES: tuple[str, ...] = ("html", "video", "pdf", "markdown")

#: Studio's label of each field, in the form's order (the order problems are reported in).
FIELD_LABELS: dict[str, str] = {spec.name: spec.label for spec in fields.FIELDS}
#: Fields Studio edits as YAML text, and their empty value's type.
YAML_FIELDS: dict[str, type] = {
    spec.name: list if spec.kind == "list" else dict for spec in fields.FIELDS if spec.structured
}
#: What a missing key counts as in :func:`validate`.
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in fields.FIELDS}


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field: ``field`` is the field name, ``message`` starts with its label."""

    field: str
    message: str


class AuthoringError(ValueError):
    """A Studio value that cannot be read at all (e.g. YAML syntax); ``str()`` is the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def as_problem(self) -> FieldProblem:
        return FieldProblem(self.field, self.message)


def _label(field: str) -> str:
    return FIELD_LABELS.get(field, field)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def validate(values: Mapping[str, Any], known_providers: Collection[str] | None = None) -> list[FieldProblem]:
    """Every problem with ``values`` (field name → value, as it would be saved), in field order; ``[]`` when fine.

    Pass all the block's values after the edit: a missing key counts as the
    field's default (cross-field rules need them all).  ``known_providers``,
    when given, are the provider names the settings configure.  Never raises
    for bad values; does not modify ``values``.
    """
    problems: list[FieldProblem] = []

    def problem(field: str, message: str, where: str = "") -> None:
        problems.append(FieldProblem(field, f"{_label(field)}{where}: {message}"))

    def get(field: str) -> Any:
        return values.get(field, DEFAULTS.get(field))

    weight = get("weight")
    try:
        if fields.to_float(weight) < 0:
            problem("weight", f"must be 0 or more, got {weight!r}")
    except fields.FieldValueError as error:
        problem("weight", error.problem)

    providers = _check_providers(get("providers"), known_providers, problem)
    single = _text(get("provider"))  # the original's provider attribute: used when there is no list
    unknown_single = fields.known_provider_problem(single, known_providers) if single else None
    if unknown_single and not get("providers"):
        problem("provider", unknown_single)
    if not _text(get("stack_template_path")) and not (providers and all(_text(p.get("template")) for p in providers)):
        problem("stack_template_path", "a lab needs a template (or every provider entry needs its own template)")
    if not _text(get("stack_user_name")):
        problem("stack_user_name", "a lab needs the user name to log in as over SSH (terminal, checks and hooks)")
    for field in (spec.name for spec in fields.FIELDS if spec.kind == "int"):  # seconds, all of them
        value = get(field)
        if value is None or value == "":
            continue
        try:
            if fields.to_int(value) <= 0:
                problem(field, f"must be a positive number of seconds, or empty to use the setting, got {value!r}")
        except fields.FieldValueError as error:
            problem(field, f"{error.problem} (seconds, or empty to use the setting)")
    for field, choices in fields.CHOICES.items():
        value = get(field)
        if not isinstance(value, str) or value not in choices:
            problem(field, f"expected one of {', '.join(c or '(empty)' for c in choices)}, got {value!r}")

    _check_ports(get("ports"), problem)
    _check_tests(get("tests"), problem)
    _check_hooks(get("hook_events"), get("hook_script"), problem)
    order = list(FIELD_LABELS)
    return sorted(problems, key=lambda p: order.index(p.field))  # stable: items keep their order


Report = Callable[..., None]


def _entries(field: str, value: Any, report: Report, kind: type = Mapping) -> list[tuple[int, Any]]:
    """``(item number, item)`` for each item of list ``value`` that is a ``kind``; reports the rest."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        report(field, f"expected a list, got {value!r}")
        return []
    wanted = "a mapping of keys to values" if kind is Mapping else "the text of a script"
    for number, item in enumerate(value, 1):
        if not isinstance(item, kind):
            report(field, f"expected {wanted}, got {item!r}", f", item {number}")
    return [(number, item) for number, item in enumerate(value, 1) if isinstance(item, kind)]


def _item_problem(field: str, number: int, error: fields.FieldValueError, report: Report) -> None:
    where = f", item {number}" + (f", {error.attribute}" if error.attribute else "")
    report(field, error.problem, where)


def _check_ports(value: Any, report: Report) -> None:
    seen: dict[int, int] = {}
    for number, item in _entries("ports", value, report):
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            report("ports", f"a port needs a name to show the learner, got {name!r}", f", item {number}")
        try:
            port = fields.port(item)["number"]
        except fields.FieldValueError as error:
            _item_problem("ports", number, error, report)
            continue
        if port in seen:
            report("ports", f"port number {port} is already used by item {seen[port]}", f", item {number}")
        seen.setdefault(port, number)


def _check_providers(
    value: Any, known_providers: Collection[str] | None, report: Report
) -> list[Mapping[str, Any]] | None:
    """Report provider problems; return the entries when the list is sound (for the template rule)."""
    seen: dict[str, int] = {}
    entries = _entries("providers", value, report)
    sound = value is None or (isinstance(value, list | tuple) and len(entries) == len(value))
    for number, item in entries:
        try:
            name = fields.provider(item)["name"]
        except fields.FieldValueError as error:
            _item_problem("providers", number, error, report)
            sound = False
            continue
        unknown = fields.known_provider_problem(name, known_providers)
        if unknown:  # not malformed (a course imports with it), but no lab can start on it here
            report("providers", unknown, f", item {number}")
        if name in seen:
            report("providers", f"provider {name!r} is already listed as item {seen[name]}", f", item {number}")
        seen.setdefault(name, number)
    return [item for _, item in entries] if sound else None


def _check_tests(value: Any, report: Report) -> None:
    for number, script in _entries("tests", value, report, str):
        if not script.strip():
            report("tests", "a test needs a script, this one is empty or only whitespace", f", item {number}")


def _check_hooks(events: Any, script: Any, report: Report) -> None:
    if events is None:
        events = {}
    if not isinstance(events, Mapping):
        report("hook_events", f"expected a mapping of events to true/false, got {events!r}")
        return
    for key, on in events.items():
        if key not in fields.HOOK_EVENTS:
            report("hook_events", f"unknown event {key!r} (events: {', '.join(fields.HOOK_EVENTS)})")
        elif not isinstance(on, bool):
            report("hook_events", f"expected true or false, got {on!r}", f", {key}")
    named = [key for key in fields.HOOK_EVENTS if events.get(key) is True]
    if named and not _text(script):
        report("hook_script", f"the {_label('hook_events')} setting names events ({', '.join(named)}) but no script")


def parse_yaml_field(field: str, text: str) -> Any:
    """The value of YAML-edited ``field`` (see :data:`YAML_FIELDS`) from Studio's ``text``.

    Empty text (or only comments) gives the field's empty value, ``[]`` or
    ``{}``.  Raises :class:`AuthoringError` for an unknown field or a YAML
    syntax error (with its line and column).  The shape is :func:`validate`'s job.
    """
    if field not in YAML_FIELDS:
        raise AuthoringError(field, f"{_label(field)}: not a field edited as YAML")
    if not (text or "").strip():
        return YAML_FIELDS[field]()
    try:
        value = fields.load_yaml(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "syntax error"
        if error.context and problem.startswith("but "):  # "…expected a single document…, but found another…"
            problem = f"{error.context}, {problem}"
        raise AuthoringError(field, f"{_label(field)}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise AuthoringError(field, f"{_label(field)}: not valid YAML: {' '.join(str(error).split())}") from None
    return YAML_FIELDS[field]() if value is None else value


class StudioEditsRefused(ValueError):
    """Studio's Save cannot be read; ``messages`` says what is wrong, one text per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def read_studio_edits(data: Any) -> tuple[dict[str, Any], list[str]]:
    """Studio's Save body ``{values: {field: value}, defaults: [field]}``, checked: ``(values, defaults)``.

    ``values`` hold the fields Studio edits (:data:`fields.STUDIO_FIELDS`),
    each of its type (:func:`fields.from_studio`), the YAML-edited ones
    parsed from their text; ``defaults`` names the fields to reset.  Raises
    :class:`StudioEditsRefused` with every problem found (a body that is not
    such an object, an unknown key or field, a value of the wrong type, YAML
    that does not parse or is not a list/mapping).  The rules between fields
    are :func:`validate`'s, run on the result by the block.
    """
    if not isinstance(data, dict):
        raise StudioEditsRefused([f"the request body must be a JSON object, got {type(data).__name__}"])
    unknown = sorted(str(key) for key in data if key not in ("values", "defaults"))
    values, defaults = data.get("values", {}), data.get("defaults", [])
    if unknown or not isinstance(values, dict) or not isinstance(defaults, list):
        raise StudioEditsRefused(["the request body must be {values: {field: value}, defaults: [field]}"])
    problems: list[str] = []
    read: dict[str, Any] = {}
    for name, value in values.items():
        try:
            value = fields.from_studio(name, value)
            if name in YAML_FIELDS and isinstance(value, str):
                value = parse_yaml_field(name, value)
        except fields.FieldValueError as error:
            problems.append(f"{_label(name)}: {error.problem}")
            continue
        except AuthoringError as error:
            problems.append(error.message)
            continue
        if name in YAML_FIELDS and not isinstance(value, YAML_FIELDS[name]):
            wanted = "a list" if YAML_FIELDS[name] is list else "a mapping"
            problems.append(f"{_label(name)}: expected {wanted}, got {value!r}"[:300])
            continue
        read[name] = value
    for name in defaults:
        if name not in fields.STUDIO_FIELDS:
            problems.append(f"{name!r} is not a field Studio edits"[:200])
    if problems:
        raise StudioEditsRefused(problems)
    return read, list(defaults)


class _StudioYamlDumper(yaml.SafeDumper):
    """Writes multi-line strings (test scripts) as literal ``|`` blocks, as an author would."""


_StudioYamlDumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text.strip("\n") or text.endswith("\n") else None
    ),
)


def yaml_text(value: Any) -> str:
    """A list or mapping as the YAML text Studio shows (empty text for an empty value)."""
    if not value:
        return ""
    return yaml.dump(value, Dumper=_StudioYamlDumper, default_flow_style=False, sort_keys=False, allow_unicode=True)


def _loads(load_class: Callable[[str], Any], name: str) -> bool:
    try:
        load_class(name)
    except Exception:  # a missing plugin shows up as any of several errors
        return False
    return True


def installed_child_types(load_class: Callable[[str], Any]) -> list[str]:
    """The :data:`CHILD_BLOCK_TYPES` whose class ``load_class`` (``XBlock.load_class``) loads; ``html`` always."""
    return [name for name in CHILD_BLOCK_TYPES if name == "html" or _loads(load_class, name)]


def summary(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, text)`` pairs describing the lab for the author view; tolerant of invalid values."""

    def entries(field: str) -> list[Mapping[str, Any]]:
        value = values.get(field)
        return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list | tuple) else []

    providers = [
        f"{p.get('name')} (capacity {p.get('capacity') if p.get('capacity') not in (None, '') else -1})"
        for p in entries("providers")
    ]
    ports = [f"{p.get('name') or '?'} ({p.get('number')})" for p in entries("ports")]
    tests = values.get("tests")
    events = values.get("hook_events")
    named = [key for key in fields.HOOK_EVENTS if isinstance(events, Mapping) and events.get(key) is True]
    return [
        (_label("stack_template_path"), str(values.get("stack_template_path") or "(none)")),
        (_label("stack_protocol"), str(values.get("stack_protocol") or "ssh")),
        (_label("stack_user_name"), str(values.get("stack_user_name") or "(none)")),
        (
            _label("providers"),
            ", ".join(providers)
            or (f"{values['provider']} (the provider attribute)" if values.get("provider") else "")
            or "the platform's default provider",
        ),
        (_label("ports"), ", ".join(ports) or "(none)"),
        (_label("tests"), str(len(tests) if isinstance(tests, list | tuple) else 0)),
        (_label("hook_script"), str(values.get("hook_script") or "(none)")),
        (_label("hook_events"), ", ".join(named) or "(none)"),
    ]
