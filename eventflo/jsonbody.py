"""Strict JSON for request bodies: only what PostgreSQL's jsonb can store gets past the edge.

Python's ``json`` module accepts ``NaN`` and ``Infinity``, overflows ``1e400``
to infinity, keeps ``\\u0000`` and lone surrogates in strings, and raises
``RecursionError`` on deep nesting. jsonb rejects all of these, so each must be
a clear 4xx here rather than a database error (a 500) later.

It also keeps the last of two equal keys in an object, as jsonb does, while
other parsers keep the first or refuse: a body that two parsers read
differently can pass a check in one and act in the other, so a key that
appears twice in one object is refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

from eventflo.errors import InvalidEvent, MalformedRequest


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's keys and values, refusing a key that appears twice (object_pairs_hook)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(
    body: bytes, *, max_depth: int, max_keys: int | None = None, per_event_in: str | None = None
) -> Any:
    """Parse a body, then check depth, key count and strings.

    MalformedRequest when it is not valid JSON (a repeated key included),
    InvalidEvent when it is JSON that cannot be stored.

    ``max_keys`` caps the object keys of one event, counted at every depth:
    the whole document, or — when ``per_event_in`` names a top-level array
    (``events`` of a batch) — each of its items on its own.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        document = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise InvalidEvent(f"The JSON is nested deeper than {max_depth} levels.") from None
    except _DuplicateKey as exc:
        raise MalformedRequest(
            f"The key {exc.key[:100]!r} appears twice in one JSON object; send each key once."
        ) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError, as are our hooks' errors
        raise MalformedRequest(f"The body is not valid JSON: {exc}") from None
    _check_storable(document, max_depth, max_keys, per_event_in)
    return document


def _check_storable(
    document: Any, max_depth: int, max_keys: int | None, per_event_in: str | None
) -> None:
    """Walk the document without recursion; the first offending value names its path."""
    # (value, path, depth, the event it belongs to: "" for the whole document)
    stack: list[tuple[Any, str, int, str]] = [(document, "", 1, "")]
    keys_per_event: dict[str, int] = {}
    while stack:
        value, path, depth, event = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise InvalidEvent(
                    f"The JSON is nested deeper than {max_depth} levels (at {path or 'the top'})."
                )
            if isinstance(value, dict):
                items: Any = value.items()
                if max_keys is not None and not (depth == 1 and per_event_in in value):
                    keys = keys_per_event[event] = keys_per_event.get(event, 0) + len(value)
                    if keys > max_keys:
                        where = f"The event at {event}" if event else "The body"
                        raise InvalidEvent(
                            f"{where} has more than {max_keys} object keys"
                            f" (EVENTFLO_MAX_JSON_KEYS)."
                        )
            else:
                items = enumerate(value)
            starts_events = depth == 2 and path == per_event_in
            for key, item in items:
                child = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    # Errors name a field path; a bad key is an error of the object holding it.
                    _check_text(key, f"the key {child!r}", field=path or "the body")
                stack.append((item, child, depth + 1, child if starts_events else event))
        elif isinstance(value, str):
            _check_text(value, path or "the body", field=path or "the body")


def _check_text(text: str, where: str, *, field: str) -> None:
    if "\x00" in text:
        raise InvalidEvent(
            f"Text at {where} contains U+0000, which PostgreSQL cannot store.",
            field_errors={field: ["Must not contain U+0000."]},
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(
            f"Text at {where} contains an unpaired UTF-16 surrogate.",
            field_errors={field: ["Must not contain unpaired surrogates."]},
        ) from None


def require_objects(document: Any, *, items_in: str | None = None) -> None:
    """The body must be an object, and so must each item of its ``items_in`` array (a batch).

    Said here in words, where a schema would only say "Invalid input type".
    """
    if not isinstance(document, dict):
        raise InvalidEvent("The body must be a JSON object.")
    if items_in is None:
        return
    items = document.get(items_in)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidEvent(
                    f"Item {index} of {items_in} must be a JSON object (an event).",
                    field_errors={items_in: {index: ["Must be a JSON object."]}},
                )
