"""Strict JSON for request bodies: only what PostgreSQL's jsonb can store gets past the edge.

Python's ``json`` module accepts ``NaN`` and ``Infinity``, overflows ``1e400``
to infinity, keeps ``\\u0000`` and lone surrogates in strings, and raises
``RecursionError`` on deep nesting. jsonb rejects all of these, so each must be
a clear 4xx here rather than a database error (a 500) later.
"""

from __future__ import annotations

import json
import math
from typing import Any

from eventflo.errors import MalformedRequest, UnprocessableEvent


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(body: bytes, *, max_depth: int) -> Any:
    """Parse a body, then check depth and strings; 400 for broken JSON, 422 for unstorable JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(f"The body is not valid UTF-8 (byte {exc.start}).") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnprocessableEvent(f"The JSON is nested deeper than {max_depth} levels.") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError, as are our hooks' errors
        raise MalformedRequest(f"The body is not valid JSON: {exc}") from None
    _check_storable(document, max_depth)
    return document


def _check_storable(document: Any, max_depth: int) -> None:
    """Walk the document without recursion; the first offending value names its path."""
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise UnprocessableEvent(
                    f"The JSON is nested deeper than {max_depth} levels (at {path or 'the top'})."
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                child = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    # Errors name a field path; a bad key is an error of the object holding it.
                    _check_text(key, f"the key {child!r}", field=path or "the body")
                stack.append((item, child, depth + 1))
        elif isinstance(value, str):
            _check_text(value, path or "the body", field=path or "the body")


def _check_text(text: str, where: str, *, field: str) -> None:
    if "\x00" in text:
        raise UnprocessableEvent(
            f"Text at {where} contains U+0000, which PostgreSQL cannot store.",
            field_errors={field: ["Must not contain U+0000."]},
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnprocessableEvent(
            f"Text at {where} contains an unpaired UTF-16 surrogate.",
            field_errors={field: ["Must not contain unpaired surrogates."]},
        ) from None
