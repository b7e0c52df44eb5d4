"""CEL conditions and ``{{payload.x}}`` placeholders: compiled, limited and read for field names.

What bounds one evaluation: an expression is at most ``MAX_EXPRESSION_CHARS``
characters and uses at most ``MAX_MACROS`` list macros (``all``, ``exists``,
``exists_one``, ``map``, ``filter``); CEL has no other loops, and the payload
holds only declared scalar fields, so a macro can only range over a list
written in the expression itself. The worst case is two nested macros over
two literal lists that together fit in the character limit: tens of
thousands of steps, milliseconds. Regular expressions (``matches``) run on
Rust's linear-time engine.

A condition runs on a flat context: ``payload.x`` (or ``payload["x"]``) is
compiled as the variable ``payload__x``, a nested ``payload.disk.percent`` as
``payload__disk_0percent`` (``_`` inside a key is spelled ``_1``, so no two
paths share a name), and ``has(payload.x)`` as ``has__payload__x``.
Converting a nested map into CEL cost about 2 µs plus 1–2 µs per entry on
every event, a top-level variable about 0.6 µs; for the five-field events of
the rules bench the context took 8.8 µs nested, 4 µs flat.
The conditions' text, their problems and what they name stay as written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

import cel

MAX_EXPRESSION_CHARS = 1000
MAX_MACROS = 2

# What a condition may name: the event's type, its source and its declared payload fields.
VARIABLES = frozenset({"event_type", "source", "payload"})

# CEL's string and bytes literals: raw ones (an r or R prefix) have no escapes, so a
# backslash before the closing quote does not hide it; the others do. Triple-quoted ones
# may span lines.
_STRING_LITERAL = re.compile(
    r"""
      (?:[bB]?[rR]|[rR][bB]) (?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*")
    | [bB]? (?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
              |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
    """,
    re.DOTALL | re.VERBOSE,
)
STRING_LITERAL_PATTERN = _STRING_LITERAL.pattern  # verbose: compile it with re.VERBOSE
# A string literal or a comment, whichever starts first: a quote inside a comment, or
# two slashes inside a string, are not what they seem.
_LITERAL_OR_COMMENT = re.compile(
    rf"(?P<literal>{_STRING_LITERAL.pattern})|(?P<comment>//[^\n]*)", re.DOTALL | re.VERBOSE
)
# ``payload`` itself, not a field of something else (``m.payload``) nor part of a name.
# A field path after ``payload.``: names joined by dots, stopping before a method call
# (``payload.host.startsWith(...)`` reads ``host``).
_PATH = r"[A-Za-z_]\w*\b(?!\s*\()(?:\s*\.\s*[A-Za-z_]\w*\b(?!\s*\())*"
_PAYLOAD_DOT = re.compile(rf"(?<![\w.])payload\s*\.\s*({_PATH})", re.ASCII)
_MACRO = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)?")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PLACEHOLDER_FIELD = re.compile(r"\s*payload\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*", re.ASCII)


FLAT_PREFIX = "payload__"
HAS_PREFIX = "has__payload__"
_HAS_FIELD = re.compile(rf"(?<![\w.])has\s*\(\s*payload\s*\.\s*({_PATH})\s*\)", re.ASCII)
_SPACE = re.compile(r"\s+")


def _path(written: str) -> str:
    """A field path as declared: ``disk . percent`` as ``disk.percent``."""
    return _SPACE.sub("", written)


@functools.cache
def _spelled(field: str) -> str:
    return "_0".join(key.replace("_", "_1") for key in field.split("."))


def flat_name(field: str) -> str:
    """The variable ``payload.<field>`` is compiled as (``field`` may be a dotted path)."""
    return FLAT_PREFIX + _spelled(field)


def has_name(field: str) -> str:
    """The variable ``has(payload.<field>)`` is compiled as: whether the field has a value."""
    return HAS_PREFIX + _spelled(field)


def _field_of(spelled: str) -> str:
    """The field a flat variable's suffix spells: the inverse of ``_spelled``."""
    return ".".join(key.replace("_1", "_") for key in spelled.split("_0"))


def without_comments(expression: str) -> str:
    """``expression`` with its ``//`` comments removed (string literals kept as they are)."""
    return _LITERAL_OR_COMMENT.sub(
        lambda m: m.group("literal") if m.group("literal") is not None else "", expression
    )


def _code(expression: str) -> str:
    """``expression`` without comments, each string literal blanked to ``''``: code only."""
    return _LITERAL_OR_COMMENT.sub(
        lambda m: "''" if m.group("literal") is not None else "", expression
    )


# A string literal, or an indexed read (whose key is a literal): found left to right, so an
# indexed read inside a literal stays part of the literal.
_LITERAL_OR_INDEX = re.compile(
    rf"(?P<literal>{_STRING_LITERAL.pattern})"
    r"""|(?<![\w.])payload\s*\[\s*(?P<quote>['"])(?P<indexed>[A-Za-z_]\w*)(?P=quote)\s*\]""",
    re.DOTALL | re.VERBOSE | re.ASCII,
)


def flatten(expression: str) -> str:
    """``expression`` with every payload read spelled as its flat variable (literals kept).

    Comments go first: a quote inside one would otherwise open a literal.
    """
    expression = without_comments(expression)
    pieces = []
    done = 0
    for found in _LITERAL_OR_INDEX.finditer(expression):
        pieces.append(_flatten_code(expression[done : found.start()]))
        literal = found.group("literal")
        pieces.append(literal if literal is not None else flat_name(found.group("indexed")))
        done = found.end()
    pieces.append(_flatten_code(expression[done:]))
    return "".join(pieces)


def _flatten_code(code: str) -> str:
    """Code outside literals: ``has(payload.x)``, then ``payload.x``."""
    code = _HAS_FIELD.sub(lambda m: has_name(_path(m.group(1))), code)
    return _PAYLOAD_DOT.sub(lambda m: flat_name(_path(m.group(1))), code)


def macro_variables(expression: str) -> set[str]:
    """The loop variables of ``expression``'s macros: ``x`` in ``[1, 2].all(x, x > 0)``."""
    return {name for name in _MACRO.findall(_code(expression)) if name}


def bounds_problem(expression: str, noun: str, variables: Iterable[str]) -> str | None:
    """What keeps ``expression`` from running within the bounds above, if anything.

    ``noun`` names it in the message (a rule's condition, an endpoint's
    filter); a macro variable may not hide one of ``variables``.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"the {noun} is {len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS}"
    if len(_MACRO.findall(_code(expression))) > MAX_MACROS:
        return f"the {noun} uses more than {MAX_MACROS} list macros"
    shadowing = sorted(macro_variables(expression) & set(variables))
    if shadowing:
        return f"a macro variable may not be named {shadowing[0]}"
    return None


def compile_condition(expression: str) -> tuple[cel.Program | None, list[str]]:
    """The program to run (flat, see above) and the problems that refuse the expression.

    The problems (syntax, size, unknown names) are those of the expression as
    written; the program is compiled from ``flatten(expression)``.
    """
    problem = bounds_problem(expression, "condition", VARIABLES)
    if problem is not None:
        return None, [problem]
    bound = macro_variables(expression)
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        return None, [f"CEL syntax error: {first_line(str(exc))}"]
    unknown = sorted(set(program.references()["variables"]) - VARIABLES - bound)
    if unknown:
        names = ", ".join(unknown)
        return None, [f"the condition names {names}; it may use only event_type, source, payload"]
    reserved = sorted(name for name in bound if name.startswith((FLAT_PREFIX, HAS_PREFIX)))
    if reserved:
        return None, [
            f"a macro variable may not start with {FLAT_PREFIX} or {HAS_PREFIX}: {reserved[0]}"
        ]
    try:
        program = cel.compile(flatten(expression))
    except ValueError as exc:  # not expected: the rewrite keeps a valid expression valid
        return None, [f"CEL syntax error: {first_line(str(exc))}"]
    return program, []


def context(
    values: dict[str, Any],
    has_fields: Iterable[str],
    variables: dict[str, Any],
) -> cel.Context:
    """The flat context of one event: its field ``values``, the ``has()`` tests, ``variables``.

    ValueError when CEL cannot hold a value (a string with a lone surrogate).
    """
    flat = {flat_name(name): value for name, value in values.items()}
    for name in has_fields:
        flat[has_name(name)] = name in values
    flat.update(variables)
    return cel.Context(flat)


def payload_fields_read(program: cel.Program) -> tuple[set[str], bool]:
    """The payload fields a compiled (flat) condition reads, and whether it reads payload otherwise.

    Read from the program CEL compiled, not from the text: a read the rewrite
    missed still names ``payload`` itself, which "otherwise" refuses (a
    computed index such as ``payload[x]``, or the payload as a whole), as it
    cannot be checked against the declarations.
    """
    names: set[str] = set()
    for variable in program.references()["variables"]:
        for prefix in (HAS_PREFIX, FLAT_PREFIX):
            if variable.startswith(prefix):
                names.add(_field_of(variable[len(prefix) :]))
                break
    return names, "payload" in program.references()["variables"]


def placeholders(text: str) -> tuple[set[str], list[str]]:
    """The fields ``{{payload.x}}`` placeholders in ``text`` name, and the malformed ones."""
    names: set[str] = set()
    bad: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        field = _PLACEHOLDER_FIELD.fullmatch(match.group(1))
        if field is None:
            bad.append(match.group(0))
        else:
            names.add(field.group(1))
    return names, bad


def template(text: str) -> tuple[str, ...]:
    """``text`` split once at its placeholders: literal, field name, literal, ..., literal.

    Filling the pieces is a join, where a regular-expression substitution on
    every verdict cost a third of a classification with templated rules.
    """
    pieces = _PLACEHOLDER.split(text)
    for index in range(1, len(pieces), 2):
        pieces[index] = pieces[index].strip()[len("payload.") :]
    return tuple(pieces)


def render(pieces: tuple[str, ...], value_of: Callable[[str], str]) -> str:
    """The text of ``template`` pieces with each field name replaced by ``value_of(name)``."""
    if len(pieces) == 1:
        return pieces[0]
    parts = [pieces[0]]
    for index in range(1, len(pieces), 2):
        parts.append(value_of(pieces[index]))
        parts.append(pieces[index + 1])
    return "".join(parts)


_CEL_SYNTAX = re.compile(r"ERROR: <input>:\d+:(\d+): (.*)")


def first_line(message: str) -> str:
    """The gist of a CEL error: its first sentence, or a syntax error's column and complaint."""
    line = message.strip().splitlines()[0] if message.strip() else message
    syntax = _CEL_SYNTAX.search(line)
    if syntax is not None:
        return f"column {syntax.group(1)}: {syntax.group(2)}"
    return line.split(". ", 1)[0]


def describe(names: Iterable[str]) -> str:
    """``a, b`` for a message."""
    return ", ".join(sorted(names))
