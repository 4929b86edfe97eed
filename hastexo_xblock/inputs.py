"""Strict JSON input for the block's handlers: bounded parsing and typed request bodies.

XBlock's ``json_handler`` parses any body with :func:`json.loads`: a body
nested 50,000 deep raises ``RecursionError`` (a 500), ``1e309`` becomes
infinity, and whatever types arrive reach the handler.  :func:`json_handler`
replaces it for every JSON handler of the block: the body is limited in size
(413) and nesting depth (400) before it is parsed, numbers must be finite,
and a handler declares the body it accepts with :func:`fields_of` (an object
with known keys of known types, 400 otherwise).  Every refusal is a JSON
``{"error": message}`` and happens before the handler changes anything.

Pure apart from WebOb (the request and response objects); never imports XBlock.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from webob import Response

#: Bytes a learner's request body may have (the page sends a few dozen).
LEARNER_BODY_LIMIT = 16 * 1024
#: Bytes of Studio's Save (YAML test scripts can be long).
STUDIO_BODY_LIMIT = 1024 * 1024
#: Nesting of arrays and objects a body may have (the deepest legitimate one, Studio's, has 4).
MAX_DEPTH = 32

# One pass over the text: a string (to its closing quote, or to the end when it has none: a
# pattern requiring the quote would rescan from every later quote, quadratic) or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.S)


class InputError(Exception):
    """A request the handler refuses; ``status`` is the HTTP status, ``message`` says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def response(self) -> Response:
        return Response(json_body={"error": self.message}, status=self.status)


def _too_deep(text: str, limit: int) -> bool:
    """Whether arrays and objects in ``text`` nest deeper than ``limit`` (brackets in strings do not count)."""
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif char in ("]", "}"):
            depth -= 1
    return False


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InputError(f"number out of range: {text[:40]}")
    return number


def _no_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number")


def loads(body: bytes, max_bytes: int = LEARNER_BODY_LIMIT, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a request body as JSON within limits; raise :class:`InputError` (400, or 413 when too large).

    Refused: more than ``max_bytes`` bytes, text that is not UTF-8, nesting
    deeper than ``max_depth``, ``NaN``/``Infinity`` and numbers that overflow
    a float (``1e309``), and anything that is not JSON.
    """
    if len(body) > max_bytes:
        raise InputError(f"request body too large (limit {max_bytes} bytes)", 413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("request body is not UTF-8 text") from None
    if _too_deep(text, max_depth):
        raise InputError(f"JSON nested too deep (limit {max_depth})")
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except ValueError:  # includes a whole number too long to convert (sys.get_int_max_str_digits)
        raise InputError("request body is not valid JSON") from None


def json_handler(
    max_bytes: int = LEARNER_BODY_LIMIT, pass_request: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn ``func(self, data, suffix)`` into a WebOb handler body that reads JSON within limits.

    ``pass_request``: call ``func(self, data, suffix, request)`` instead, for
    a handler that also reads the request's headers.

    Use under ``XBlock.handler``: ``@XBlock.handler`` then ``@inputs.json_handler()``.
    A non-POST is 405; a body :func:`loads` refuses, or an :class:`InputError`
    the handler raises, is its status with ``{"error": message}``; the
    platform's ``JsonHandlerError`` passes through as XBlock's
    ``json_handler`` answers it.  A handler's dict is answered as JSON; a
    ``Response`` is returned as it is.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def handler(self: Any, request: Any, suffix: str = "") -> Response:
            if request.method != "POST":
                response = InputError("POST required", 405).response()
                response.allow = ("POST",)
                return response
            try:
                data = loads(request.body, max_bytes)
                result = func(self, data, suffix, request) if pass_request else func(self, data, suffix)
            except InputError as error:
                return error.response()
            except Exception as error:
                get_response = getattr(error, "get_response", None)  # xblock.exceptions.JsonHandlerError
                if get_response is None or not hasattr(error, "status_code"):
                    raise
                return get_response()
            if isinstance(result, Response):
                return result
            return Response(json.dumps(result), content_type="application/json", charset="utf8")

        handler.strict_json = True  # type: ignore[attr-defined]  # for the test that every JSON handler is
        return handler

    return decorate


# --- typed bodies ------------------------------------------------------------------------


def boolean(name: str, value: Any) -> bool:
    """A JSON ``true``/``false`` (``"false"`` and ``1`` are refused: they are not booleans)."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {_shown(value)}")
    return value


def optional_port(name: str, value: Any) -> int | None:
    """``null`` or a whole number in 1–65535 (``8080.0`` counts; ``"8080"``, ``true`` and ``1e309`` do not)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InputError(f"{name} must be a port number (1-65535) or null, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


Reader = Callable[[str, Any], Any]


def fields_of(data: Any, readers: Mapping[str, Reader], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data`` as an object whose keys are among ``readers``, each value read by its reader.

    Returns the read values of the keys present.  Raises :class:`InputError`
    for a body that is not an object, an unknown key, a missing
    ``required`` key or a value its reader refuses.
    """
    if not isinstance(data, dict):
        raise InputError(f"the request body must be a JSON object, got {type(data).__name__}")
    unknown = sorted(key for key in data if key not in readers)
    if unknown:
        raise InputError(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)[:200]}")
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError(f"missing field: {', '.join(missing)}")
    return {key: readers[key](key, value) for key, value in data.items()}
