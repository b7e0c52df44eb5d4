"""Declared payload fields: their types, what a value of each type is, and values to probe with.

A declaration is both the API's validation (an accepted event can be judged)
and the whole of what a condition sees of the payload.
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


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared payload field. ``required`` when it has no default."""

    name: str
    type: FieldType
    default: Any = None
    required: bool = True

    def error(self, payload: Mapping[str, Any]) -> str | None:
        """The API's message when ``payload`` lacks this field or has it ill-typed, else None."""
        if self.name not in payload:
            return "Missing data for required field." if self.required else None
        return None if self.type.accepts(payload[self.name]) else self.type.message


def cel_value(value: Any) -> Any:
    """``value`` as CEL can hold it: an integer beyond 64 bits becomes a double (maybe infinite)."""
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def probe_payload(fields: Mapping[str, Field], round_number: int) -> dict[str, Any]:
    """A payload that satisfies ``fields``, with the ``round_number``-th probe value of each."""
    return {name: field.type.probes[round_number] for name, field in fields.items()}
