"""Equality and membership tests between a field and a literal (or two fields), for their types.

CEL's ``==``, ``!=`` and ``in`` accept operands of different types and
answer false (or true): ``payload.percent == "full"`` is valid CEL that can
never match, and no probe shows it, as it fails nowhere. The ordering
operators (``<``, ``>=``, ...) need no help: they raise on mixed types, which
the probes catch. So the file's conditions are read for the plain forms
``payload.F == LITERAL``, ``LITERAL != payload.F``, ``payload.F == payload.G``
and ``payload.F in [LITERAL, ...]``, and the reader refuses those whose two
sides can never be equal. An operand inside a larger expression
(``payload.a + 1 == 2``) is not a plain form and is left to CEL.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from eventflo.rules import expressions

# Tokens, longest first; string literals whole, so nothing inside one is read as code.
_TOKEN = re.compile(
    rf"""
      (?P<string>{expressions.STRING_LITERAL_PATTERN})
    | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?|\d+[uU]?)
    | (?P<name>[A-Za-z_]\w*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{{}}])
    | (?P<space>\s+)
    """,
    re.DOTALL | re.VERBOSE | re.ASCII,
)
# What may stand right before or after a plain comparison: nothing binds tighter there.
_OPENING = frozenset({"(", ",", "[", "{", "&&", "||", "?", ":"})
_CLOSING = frozenset({")", ",", "]", "}", "&&", "||", "?", ":"})


@dataclasses.dataclass(frozen=True)
class Operand:
    """A side of a comparison: a declared field's name, or a literal with its CEL kind."""

    field: str | None = None
    kind: str | None = None  # "number", "string", "boolean", "null" or "bytes"
    text: str = ""


@dataclasses.dataclass(frozen=True)
class Comparison:
    left: Operand
    operator: str  # "==", "!=" or "in"
    right: tuple[Operand, ...]  # one operand, or the elements of an ``in`` list


def comparisons(expression: str) -> list[Comparison]:
    """The plain comparisons in ``expression`` (comments removed first)."""
    tokens = list(_tokens(expressions.without_comments(expression)))
    found = []
    for start in range(len(tokens)):
        if start > 0 and tokens[start - 1][1] not in _OPENING:
            continue
        comparison = _comparison_at(tokens, start)
        if comparison is not None:
            found.append(comparison)
    return found


def _tokens(code: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(code):
        match = _TOKEN.match(code, position)
        if match is None:  # something CEL refused already, or will: not our concern here
            yield ("other", code[position])
            position += 1
            continue
        position = match.end()
        if match.lastgroup != "space":
            yield (match.lastgroup or "other", match.group())


def _comparison_at(tokens: list[tuple[str, str]], start: int) -> Comparison | None:
    left = _operand_at(tokens, start)
    if left is None:
        return None
    operand, after = left
    if after >= len(tokens):
        return None
    operator = tokens[after][1]
    if operator in ("==", "!="):
        right = _operand_at(tokens, after + 1)
        if right is None or not _ends_at(tokens, right[1]):
            return None
        return Comparison(operand, operator, (right[0],))
    if operator == "in" and operand.field is not None:
        elements = _literal_list_at(tokens, after + 1)
        if elements is None or not _ends_at(tokens, elements[1]):
            return None
        return Comparison(operand, "in", elements[0])
    return None


def _ends_at(tokens: list[tuple[str, str]], index: int) -> bool:
    return index >= len(tokens) or tokens[index][1] in _CLOSING


def _operand_at(tokens: list[tuple[str, str]], index: int) -> tuple[Operand, int] | None:
    """A field read or a literal starting at ``index``, and the index after it."""
    if index >= len(tokens):
        return None
    kind, text = tokens[index]
    if kind == "name" and text == "payload":
        return _field_at(tokens, index + 1)
    if kind == "name" and text in ("true", "false"):
        return Operand(kind="boolean", text=text), index + 1
    if kind == "name" and text == "null":
        return Operand(kind="null", text=text), index + 1
    if kind == "string":
        is_bytes = text[0] in "bB" or text[:2].lower() == "rb"
        return Operand(kind="bytes" if is_bytes else "string", text=text), index + 1
    if kind == "number":
        return Operand(kind="number", text=text), index + 1
    if text == "-" and index + 1 < len(tokens) and tokens[index + 1][0] == "number":
        return Operand(kind="number", text="-" + tokens[index + 1][1]), index + 2
    return None


def _field_at(tokens: list[tuple[str, str]], index: int) -> tuple[Operand, int] | None:
    """``.a.b`` or ``["a"]`` after ``payload``; None when followed by a call or an index."""
    path: list[str] = []
    while index + 1 < len(tokens) and tokens[index][1] == "." and tokens[index + 1][0] == "name":
        path.append(tokens[index + 1][1])
        index += 2
    if not path and index + 2 < len(tokens) and tokens[index][1] == "[":
        key, closing = tokens[index + 1], tokens[index + 2]
        if key[0] == "string" and closing[1] == "]" and key[1][0] in "'\"":
            path.append(key[1][1:-1])
            index += 3
    if not path or (index < len(tokens) and tokens[index][1] in ("(", "[", ".")):
        return None
    return Operand(field=".".join(path)), index


def _literal_list_at(
    tokens: list[tuple[str, str]], index: int
) -> tuple[tuple[Operand, ...], int] | None:
    """``[LITERAL, ...]`` at ``index`` (literals only), and the index after it."""
    if index >= len(tokens) or tokens[index][1] != "[":
        return None
    elements = []
    index += 1
    while index < len(tokens) and tokens[index][1] != "]":
        element = _operand_at(tokens, index)
        if element is None or element[0].field is not None:
            return None
        elements.append(element[0])
        index = element[1]
        if index < len(tokens) and tokens[index][1] == ",":
            index += 1
    if index >= len(tokens):
        return None
    return tuple(elements), index + 1
