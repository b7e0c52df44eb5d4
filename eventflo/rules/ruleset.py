"""The compiled, immutable rule set and the judging of one event with it.

Pure: no Flask, no database, no clock, no randomness, so the same event always
gets the same verdict. An event is judged only by its own type's rules and the
wildcard ones, in file order, first match wins; the conditions see one context
built once per event from the declared fields alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn

import cel

from eventflo.rules import expressions
from eventflo.rules.fields import MISSING, Absent, Field, cel_value
from eventflo.rules.model import Classification, Problem, RuleError, Severity

Payload = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One compiled rule. ``event_types=None`` matches every type; ``program=None`` always."""

    rule_id: str
    event_types: tuple[str, ...] | None
    condition: str | None
    program: cel.Program | None
    severity: Severity
    should_escalate: bool
    reason: str
    recommendation: str
    line: int

    # The verdict when neither text has placeholders: made once per rule, not once per event.
    fixed: Classification | None = dataclasses.field(init=False, repr=False, compare=False)
    # Both texts split at their placeholders once (expressions.template), filled per event.
    _pieces: tuple[tuple[str, ...], tuple[str, ...]] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        templated = "{{" in self.reason or "{{" in self.recommendation
        verdict = None if templated else self._verdict(self.reason, self.recommendation)
        pieces = (expressions.template(self.reason), expressions.template(self.recommendation))
        object.__setattr__(self, "fixed", verdict)  # frozen: the documented way
        object.__setattr__(self, "_pieces", pieces)

    def _verdict(self, reason: str, recommendation: str) -> Classification:
        return Classification(
            severity=self.severity,
            reason=reason,
            recommendation=recommendation,
            should_escalate=self.should_escalate,
            rule_id=self.rule_id,
        )

    def verdict(self, payload: Payload, declared: Mapping[str, Field]) -> Classification:
        """This rule's verdict, its placeholders filled from ``payload`` and the defaults."""
        if self.fixed is not None:
            return self.fixed

        def value_of(name: str) -> str:
            field = declared.get(name)
            if field is None:  # not expected: a loaded set's placeholders name declared fields
                return ""
            value = field.lookup(payload)
            if not isinstance(value, Absent):
                return _placeholder_text(value)
            return "" if field.required else _placeholder_text(field.default)

        reason, recommendation = self._pieces
        return self._verdict(
            expressions.render(reason, value_of), expressions.render(recommendation, value_of)
        )


def _placeholder_text(value: Any) -> str:
    """A payload value as placeholder text: JSON's spelling, strings as they are.

    The common kinds skip json.dumps, with the same result: JSON spells an
    int and a finite float as ``repr`` does.
    """
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)


@dataclasses.dataclass(frozen=True)
class Step:
    """Why one rule did or did not give an event its verdict (``rules test``)."""

    rule: Rule
    outcome: str  # "matched", "condition false" or "event type differs"


@dataclasses.dataclass(frozen=True)
class TestCase:
    """A ``tests`` entry: an event and what the file's author expects of it."""

    line: int
    event_type: str
    source: str | None
    payload: Mapping[str, Any]
    expect: Mapping[str, Any]


class RuleSet:
    """A rule file, validated and compiled: immutable, shared by every batch that uses it."""

    def __init__(
        self,
        *,
        text: str,
        fields: Mapping[str, Mapping[str, Field]],
        rules: Sequence[Rule],
        tests: Sequence[TestCase],
        document: Mapping[str, Any],
    ) -> None:
        self.text = text
        self.fields: Mapping[str, Mapping[str, Field]] = MappingProxyType(
            {t: MappingProxyType(dict(f)) for t, f in fields.items()}
        )
        self.rules = tuple(rules)
        self.tests = tuple(tests)
        self._document = document
        self._wildcard = tuple(r for r in self.rules if r.event_types is None)
        # The variables any condition names: CEL converts each one given to a
        # context (about a microsecond each), so a context holds only these.
        self._reads_type, self._reads_source = (
            any(name in r.program.references()["variables"] for r in self.rules if r.program)
            for name in ("event_type", "source")
        )
        named = {t for r in self.rules for t in (r.event_types or ())}
        self._by_type: Mapping[str, tuple[Rule, ...]] = MappingProxyType(
            {
                t: tuple(r for r in self.rules if r.event_types is None or t in r.event_types)
                for t in named
            }
        )
        self._reads: Mapping[str, tuple[_Read, ...]] = MappingProxyType(
            {t: _reads(self.fields.get(t, {}), self._by_type[t]) for t in named}
        )

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        """The rules an event of ``event_type`` is judged by, in order."""
        return self._by_type.get(event_type, self._wildcard)

    def field_errors(self, event_type: str, payload: Payload) -> dict[str, str]:
        """The API's message per declared field missing or ill-typed; empty when judgeable."""
        errors = {}
        for name, field in self.fields.get(event_type, {}).items():
            message = field.error(payload)
            if message is not None:
                errors[name] = message
        return errors

    def classify(self, event_type: str, source: str | None, payload: Payload) -> Classification:
        """Judge one event with the first rule that matches; RuleError naming a rule that fails."""
        rule = self._first_match(event_type, source, payload, None)
        return rule.verdict(payload, self.fields.get(event_type, {}))

    def explain(
        self, event_type: str, source: str | None, payload: Payload
    ) -> tuple[Classification, list[Step]]:
        """The verdict, and for every rule up to the matching one why it did or did not match."""
        steps: list[Step] = []
        rule = self._first_match(event_type, source, payload, steps)
        return rule.verdict(payload, self.fields.get(event_type, {})), steps

    def run_tests(self) -> list[Problem]:
        """The file's own ``tests`` that fail, each at its line."""
        problems = []
        for case in self.tests:
            errors = self.field_errors(case.event_type, case.payload)
            if errors:
                detail = "; ".join(f"payload.{k}: {v}" for k, v in sorted(errors.items()))
                problems.append(Problem(case.line, f"test event does not fit the fields: {detail}"))
                continue
            try:
                verdict = self.classify(case.event_type, case.source, case.payload)
            except RuleError as exc:
                problems.append(Problem(case.line, f"test failed: {exc}"))
                continue
            got = {
                "rule": verdict.rule_id,
                "severity": verdict.severity.value,
                "escalate": verdict.should_escalate,
            }
            wrong = [k for k, v in case.expect.items() if got[k] != v]
            if wrong:
                expected = ", ".join(f"{k} {case.expect[k]}" for k in wrong)
                actual = ", ".join(f"{k} {got[k]}" for k in wrong)
                problems.append(
                    Problem(case.line, f"test failed: expected {expected}; got {actual}")
                )
        return problems

    def canonical(self) -> str:
        """The rule set as YAML in a fixed form (keys in order, no comments): hash it, print it."""
        import yaml

        return yaml.safe_dump(
            _plain(self._document), sort_keys=False, allow_unicode=True, width=100
        )

    def _first_match(
        self, event_type: str, source: str | None, payload: Payload, steps: list[Step] | None
    ) -> Rule:
        candidates = self.rules if steps is not None else self.rules_for(event_type)
        context: cel.Context | None = None
        # The hot path of every classification: rules_for has filtered by type already, and
        # a condition runs inline (a method call per rule cost a tenth of the time).
        for rule in candidates:
            if (
                steps is not None
                and rule.event_types is not None
                and event_type not in rule.event_types
            ):
                steps.append(Step(rule, "event type differs"))
                continue
            program = rule.program
            if program is not None:
                if context is None:
                    context = self._context(rule, event_type, source, payload)
                try:
                    result = program.execute(context)
                except Exception as exc:
                    raise self._failure(rule, event_type, payload, exc) from exc
                if result is False:
                    if steps is not None:
                        steps.append(Step(rule, "condition false"))
                    continue
                if result is not True:
                    raise RuleError(
                        f"rule {rule.rule_id}: the condition gave {result!r}, not true or false",
                        rule_id=rule.rule_id,
                    )
            if steps is not None:
                steps.append(Step(rule, "matched"))
            return rule
        # A loaded set ends with a catch-all rule; reaching here means it has none.
        raise RuleError(f"no rule matches event type {event_type!r}")

    def _context(
        self, rule: Rule, event_type: str, source: str | None, payload: Payload
    ) -> cel.Context:
        """What the conditions see: the declared fields (defaults applied), checked, built once.

        A field of the wrong type (stored before it was declared, or not
        through the API) fails the event here, naming ``rule``: the first rule
        whose condition would have read the payload.
        """
        variables: dict[str, Any] = {}
        for key, field, accepts, value_name, has_name in self._reads.get(event_type, ()):
            # A top-level field is read inline: this loop runs for every event.
            value = payload.get(key, MISSING) if key is not None else field.lookup(payload)
            if value.__class__ is Absent:
                if value.why is not None:
                    self._refuse(rule, field, payload)
                if field.required:  # no value: has() is false, a read raises
                    if has_name is not None:
                        variables[has_name] = False
                    continue
                value = field.default
            elif not accepts(value):
                self._refuse(rule, field, payload)
            if has_name is not None:
                variables[has_name] = True
            if value_name is not None:
                variables[value_name] = cel_value(value)
        if self._reads_type:
            variables["event_type"] = event_type
        if self._reads_source:
            variables["source"] = source
        try:
            return cel.Context(variables)
        except ValueError as exc:  # a string CEL cannot hold (a lone surrogate)
            reason = expressions.first_line(str(exc))
            raise RuleError(
                f"rule {rule.rule_id}: the event cannot be read: {reason}", rule_id=rule.rule_id
            ) from exc

    @staticmethod
    def _refuse(rule: Rule, field: Field, payload: Payload) -> NoReturn:
        raise RuleError(
            f"rule {rule.rule_id}: payload.{field.name}: {field.error(payload)}",
            rule_id=rule.rule_id,
        )

    def _failure(self, rule: Rule, event_type: str, payload: Payload, exc: Exception) -> RuleError:
        """The error of a condition that raised, naming the ill-typed field when there is one."""
        errors = self.field_errors(event_type, payload)
        if errors:
            reason = "; ".join(f"payload.{k}: {v}" for k, v in sorted(errors.items()))
        else:
            reason = expressions.first_line(str(exc))
        return RuleError(f"rule {rule.rule_id}: {reason}", rule_id=rule.rule_id)


# A field some condition of an event type reads: its payload key (None when nested), the
# field, its type's test, and its flat variables for the value and for has() (None when no
# condition reads it that way).
_Read = tuple[str | None, Field, Callable[[Any], bool], str | None, str | None]


def _reads(fields: Mapping[str, Field], rules: Sequence[Rule]) -> tuple[_Read, ...]:
    """The fields ``rules`` read, as ``_context`` fills them: the others cost nothing per event.

    Converting a value into CEL costs about half a microsecond, so a field
    declared only for the API's checks is neither converted nor checked here.
    """
    variables = {v for r in rules if r.program for v in r.program.references()["variables"]}
    reads = []
    for name, field in fields.items():
        value_name, has_name = expressions.flat_name(name), expressions.has_name(name)
        if value_name in variables or has_name in variables:
            reads.append(
                (
                    name if len(field.path) == 1 else None,
                    field,
                    field.type.accepts,
                    value_name if value_name in variables else None,
                    has_name if has_name in variables else None,
                )
            )
    return tuple(reads)


def _plain(value: Any) -> Any:
    """Located mappings and tuples as plain dicts and lists, for yaml.safe_dump."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
