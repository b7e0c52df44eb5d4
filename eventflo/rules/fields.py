"""Declared payload fields: their types, what a value of each type is, and values to probe with.

A declaration is both the API's validation (an accepted event can be judged)
and the whole of what a condition sees of the payload. A field is a
top-level key (``percent``) or a path into nested objects (``disk.percent``
for ``{"disk": {"percent": 95}}``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

# The range CEL's int holds; a JSON integer beyond it is judged as a double.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _is_number(value: Any) -> bool:
    # bool is an int subclass; ints are always finite (math.isfinite overflows on huge ones).
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class FieldType:
    """A declarable type: its test, the API's message for a wrong value, and probe values."""

    name: str
    accepts: Callable[[Any], bool]
    message: str
    # Values the probes try, in turn: each kind of value a condition may meet.
    probes: tuple[Any, ...]


FIELD_TYPES: Mapping[str, FieldType] = {
    t.name: t
    for t in (
        FieldType("number", _is_number, "Must be a finite number.", (0, 1.5, -1, 1000000)),
        FieldType("integer", _is_integer, "Must be an integer.", (0, 1, -1, 1000000)),
        FieldType("string", _is_string, "Must be a string.", ("", "probe", "0", "probe")),
        FieldType("boolean", _is_boolean, "Must be true or false.", (False, True, False, True)),
    )
}

PROBE_ROUNDS = 4


class Absent:
    """What ``Field.lookup`` finds where the payload has no value: a marker, never a value."""

    def __init__(self, why: str | None) -> None:
        self.why = why  # None: simply missing; else the message of a wrong shape


MISSING = Absent(None)


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared payload field. ``required`` when it has no default.

    ``name`` is as declared (``disk.percent``); ``path`` its keys, outermost first.
    """

    name: str
    type: FieldType
    default: Any = None
    required: bool = True
    path: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.name.split(".")))  # frozen: the documented way

    def lookup(self, payload: Mapping[str, Any]) -> Any:
        """The field's value in ``payload``, or an ``Absent`` marker (``MISSING``, or a bad shape).

        A nested field under a key whose value is not an object is a bad
        shape: the event does not look like its declaration.
        """
        if len(self.path) == 1:
            return payload.get(self.name, MISSING)
        value: Any = payload
        for depth, key in enumerate(self.path):
            if not isinstance(value, Mapping):
                outer = ".".join(self.path[:depth])
                return Absent(f"Must be inside an object, and payload.{outer} is not one.")
            if key not in value:
                return MISSING
            value = value[key]
        return value

    def error(self, payload: Mapping[str, Any]) -> str | None:
        """The API's message when ``payload`` lacks this field or has it ill-typed, else None."""
        value = self.lookup(payload)
        if isinstance(value, Absent):
            if value.why is not None:
                return value.why
            return "Missing data for required field." if self.required else None
        return None if self.type.accepts(value) else self.type.message


def cel_value(value: Any) -> Any:
    """``value`` as CEL can hold it: an integer beyond 64 bits becomes a double (maybe infinite)."""
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def probe_values(fields: Mapping[str, Field], round_number: int) -> dict[str, Any]:
    """The ``round_number``-th probe value of each field in ``fields``, by field name."""
    return {name: field.type.probes[round_number] for name, field in fields.items()}


def as_payload(values: Mapping[str, Any]) -> dict[str, Any]:
    """The payload holding ``values`` by field name: ``{"disk.percent": 1}`` is
    ``{"disk": {"percent": 1}}``."""
    payload: dict[str, Any] = {}
    for name, value in values.items():
        *outer, last = name.split(".")
        inner = payload
        for key in outer:
            inner = inner.setdefault(key, {})
        inner[last] = value
    return payload
