"""Endpoint filters: the CEL expression over ``event`` and ``result`` that picks what is delivered.

The same CEL library and the same bounds as rule conditions (at most
``MAX_EXPRESSION_CHARS`` characters and ``MAX_MACROS`` list macros; see
``eventflo.rules.expressions``). A filter sees

- ``event``: ``event_id``, ``event_type``, ``source`` (null when none) and
  ``payload``;
- ``result``: ``severity``, ``classification_reason``, ``recommendation``,
  ``should_escalate``, ``rule`` and ``rules_version``, as ``GET /events/{id}``
  names them.

A filter is checked when the endpoint is added: it must compile, name only
those fields, and give true or false on sample events of every severity. A
payload field is not declared anywhere, so a filter that reads one an event
lacks simply does not match that event (``has(event.payload.x)`` says so
explicitly).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import cel

from eventflo.rules import expressions
from eventflo.rules.model import Severity

DEFAULT = "result.should_escalate"
VARIABLES = frozenset({"event", "result"})
EVENT_FIELDS = ("event_id", "event_type", "source", "payload")
RESULT_FIELDS = (
    "severity",
    "classification_reason",
    "recommendation",
    "should_escalate",
    "rule",
    "rules_version",
)
_KNOWN = {"event": EVENT_FIELDS, "result": RESULT_FIELDS}
# ``event.x`` or ``result.x`` itself (not ``m.event.x``), in code outside literals and comments.
_MEMBER = re.compile(r"(?<![\w.])(event|result)\s*\.\s*([A-Za-z_]\w*)", re.ASCII)
# ``event["x"]`` or ``result['x']``: the same read, indexed by a plain string literal.
_INDEXED = re.compile(r"""(?<![\w.])(event|result)\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]""")


class FilterError(ValueError):
    """A filter that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class DeliveryFilter:
    """A compiled filter. ``reads_event`` is false when it looks at the result alone."""

    text: str
    program: cel.Program
    reads_event: bool

    def matches(self, event: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Whether ``event`` judged as ``result`` goes to the endpoint.

        A payload field the event lacks (CEL's KeyError) is no match; any
        other failure is raised for the caller to report.
        """
        try:
            return self.program.execute(cel.Context({"event": event, "result": result})) is True
        except KeyError:
            return False


def compile_filter(text: str) -> DeliveryFilter:
    """The compiled filter, or FilterError naming the problem."""
    text = text.strip()
    if not text:
        raise FilterError("the filter is empty; the default is " + DEFAULT)
    problem = expressions.bounds_problem(text, "filter", VARIABLES)
    if problem is not None:
        raise FilterError(problem)
    try:
        program = cel.compile(text)
    except ValueError as exc:
        raise FilterError(f"CEL syntax error: {expressions.first_line(str(exc))}") from None
    names = set(program.references()["variables"]) - expressions.macro_variables(text)
    unknown = sorted(names - VARIABLES)
    if unknown:
        raise FilterError(
            f"the filter names {', '.join(unknown)}; it may use only event and result"
        )
    code = expressions.without_comments(text)
    reads = _MEMBER.findall(_without_literals(code))
    reads += [(variable, double or single) for variable, double, single in _INDEXED.findall(code)]
    for variable, member in reads:
        if member not in _KNOWN[variable]:
            raise FilterError(
                f"{variable} has no field {member!r}; it has {', '.join(_KNOWN[variable])}"
            )
    compiled = DeliveryFilter(text, program, reads_event="event" in names)
    _probe(compiled)
    return compiled


def _without_literals(code: str) -> str:
    return re.sub(expressions.STRING_LITERAL_PATTERN, "''", code, flags=re.DOTALL | re.VERBOSE)


def sample_result(severity: Severity, *, escalate: bool) -> dict[str, Any]:
    """A result as filters see it, for probes and previews."""
    return {
        "severity": severity.value,
        "classification_reason": "probe",
        "recommendation": "probe",
        "should_escalate": escalate,
        "rule": "probe",
        "rules_version": 1,
    }


def _probe(compiled: DeliveryFilter) -> None:
    """Run the filter on sample events: a type error or a non-boolean shows now, not per event."""
    events: tuple[dict[str, Any], ...] = (
        {"event_id": "0", "event_type": "probe", "source": None, "payload": {}},
        {"event_id": "0", "event_type": "probe", "source": "probe", "payload": {}},
    )
    for event in events:
        for severity in Severity:
            for escalate in (False, True):
                result = sample_result(severity, escalate=escalate)
                try:
                    value = compiled.program.execute(
                        cel.Context({"event": event, "result": result})
                    )
                except KeyError:
                    continue  # a payload field the sample lacks
                except Exception as exc:
                    source = "without a source" if event["source"] is None else "with a source"
                    raise FilterError(
                        f"the filter fails on a {severity.value} result of an event {source}:"
                        f" {expressions.first_line(str(exc))}"
                    ) from None
                if not isinstance(value, bool):
                    raise FilterError(f"the filter must give true or false, not {value!r}")
