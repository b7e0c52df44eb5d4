"""Turns a rule file's text into a RuleSet, or refuses it with every problem and its line.

Checked before a set is ever used: the YAML and its keys, each rule, each
condition (syntax, size, the fields it reads, and probe evaluations for
wrong-type comparisons), each placeholder, the catch-all, and the file's tests.

The probes: every condition is evaluated, for each of its event types, on
``PROBE_ROUNDS`` payloads that satisfy the declarations (numbers 0, 1.5, -1,
1000000; strings "", "probe", "0"; both booleans; a source of "probe", none
or ""). A comparison of a field with a value of another type fails on every
payload of the declared type, so it shows here rather than on a live event.
Their limit: a branch no probe reaches (``payload.n == 7 && ...``) is not
evaluated, so an error only there shows when an event reaches it, and that
event then fails with the rule's id in its error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import cel

from eventflo.rules import comparisons, expressions, yamlfile
from eventflo.rules.fields import FIELD_TYPES, PROBE_ROUNDS, Field, as_payload, probe_values
from eventflo.rules.model import Problem, RuleFileError, Severity
from eventflo.rules.ruleset import Rule, RuleSet, TestCase
from eventflo.rules.yamlfile import Located

TOP_KEYS = ("fields", "rules", "tests")
RULE_KEYS = ("id", "event_type", "when", "severity", "escalate", "reason", "recommendation")
FIELD_KEYS = ("type", "default")
TEST_KEYS = ("event", "expect")
EVENT_KEYS = ("event_type", "source", "payload")
EXPECT_KEYS = ("rule", "severity", "escalate")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PROBE_SOURCES = ("probe", None, "", "probe")


def load(text: str, *, run_tests: bool = True) -> RuleSet:
    """The compiled rule set of ``text``; RuleFileError with every problem when it is refused.

    The file's own ``tests`` run too, unless ``run_tests`` is false (to try
    events on a draft): a set whose tests fail is refused.
    """
    document = yamlfile.read(text)
    problems: list[Problem] = []
    ruleset = _Reader(problems).read(text, document)
    if ruleset is not None and not problems and run_tests:
        problems.extend(ruleset.run_tests())
    if problems or ruleset is None:
        raise RuleFileError(problems)
    return ruleset


class _Reader:
    """One pass over a parsed file, appending each problem it finds and going on."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(line, message))

    def read(self, text: str, document: Any) -> RuleSet | None:
        if not isinstance(document, Located):
            self.problem(1, "a rule file is a mapping with the keys fields, rules and tests")
            return None
        self.unknown_keys(document, TOP_KEYS, "the file")
        fields = self.fields(document)
        rules = self.rules(document, fields)
        tests = self.tests(document)
        if self.problems:
            return None
        return RuleSet(text=text, fields=fields, rules=rules, tests=tests, document=document)

    def unknown_keys(self, mapping: Located, allowed: tuple[str, ...], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                expected = ", ".join(allowed)
                self.problem(mapping.line_of(key), f"unknown key {key!r} in {what} ({expected})")

    def mapping(self, value: Any, line: int, what: str) -> Located | None:
        if isinstance(value, Located):
            return value
        self.problem(line, f"{what} must be a mapping")
        return None

    # -- fields ----------------------------------------------------------------

    def fields(self, document: Located) -> dict[str, dict[str, Field]]:
        declared: dict[str, dict[str, Field]] = {}
        if "fields" not in document or document["fields"] is None:
            return declared
        by_type = self.mapping(document["fields"], document.line_of("fields"), "fields")
        for event_type, names in (by_type or {}).items():
            line = by_type.line_of(event_type) if by_type else 1
            if not isinstance(event_type, str):
                self.problem(line, f"event type {event_type!r} must be a string")
                continue
            per_type = self.mapping(names, line, f"the fields of {event_type}")
            declared[event_type] = {}
            for name, spec in (per_type or {}).items():
                field = self.field(
                    event_type, name, spec, per_type.line_of(name) if per_type else line
                )
                if field is not None:
                    declared[event_type][name] = field
            self.objects_and_values(event_type, declared[event_type], per_type)
        return declared

    def objects_and_values(
        self, event_type: str, fields: dict[str, Field], per_type: Located | None
    ) -> None:
        """Refuse a name declared both as a value and as an object holding others."""
        for name in list(fields):
            path = fields[name].path
            for depth in range(1, len(path)):
                outer = ".".join(path[:depth])
                if outer in fields:
                    line = per_type.line_of(name) if per_type else 1
                    self.problem(
                        line,
                        f"field {event_type}.{name}: {outer} is declared as a value,"
                        " so it cannot also hold fields",
                    )
                    del fields[name]
                    break

    def field(self, event_type: str, name: Any, spec: Any, line: int) -> Field | None:
        what = f"field {event_type}.{name}"
        if not isinstance(name, str) or _FIELD_NAME.fullmatch(name) is None:
            self.problem(
                line,
                f"{what}: a field name is letters, digits and _ (not first a digit),"
                " or such names joined by dots for a nested value (disk.percent)",
            )
            return None
        body = self.mapping(spec, line, what)
        if body is None:
            return None
        self.unknown_keys(body, FIELD_KEYS, what)
        type_name = body.get("type")
        if not isinstance(type_name, str) or type_name not in FIELD_TYPES:
            known = ", ".join(FIELD_TYPES)
            self.problem(body.line_of("type"), f"{what}: type must be one of {known}")
            return None
        field_type = FIELD_TYPES[type_name]
        if "default" not in body:
            return Field(name, field_type)
        if not field_type.accepts(body["default"]):
            self.problem(
                body.line_of("default"), f"{what}: the default does not fit: {field_type.message}"
            )
            return None
        return Field(name, field_type, default=body["default"], required=False)

    # -- rules -----------------------------------------------------------------

    def rules(self, document: Located, fields: dict[str, dict[str, Field]]) -> list[Rule]:
        entries = document.get("rules")
        line = document.line_of("rules")
        if not isinstance(entries, list) or not entries:
            self.problem(line, "rules must be a non-empty list of rules")
            return []
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for entry in entries:
            body = self.mapping(entry, line, "a rule")
            if body is None:
                continue
            rule = self.rule(body, fields)
            if rule is None:
                continue
            if rule.rule_id in seen:
                self.problem(
                    body.line_of("id"),
                    f"duplicate rule id {rule.rule_id!r} (first at line {seen[rule.rule_id]})",
                )
            seen.setdefault(rule.rule_id, body.line_of("id"))
            rules.append(rule)
        self.catch_all(entries, line)
        return rules

    def catch_all(self, entries: list[Any], line: int) -> None:
        """Every event must get a verdict: the simple, checkable way is a last catch-all rule."""
        bodies = [e for e in entries if isinstance(e, Located)]
        ends = [i for i, b in enumerate(bodies) if "event_type" not in b and "when" not in b]
        if not ends:
            self.problem(
                bodies[-1].line if bodies else line,
                "no catch-all: the last rule must have no event_type and no when, "
                "so that every event gets a verdict",
            )
            return
        for unreachable in bodies[ends[0] + 1 :]:
            self.problem(
                unreachable.line,
                f"rule {unreachable.get('id')!r} can never match: "
                f"it follows the catch-all rule {bodies[ends[0]].get('id')!r}",
            )

    def rule(self, body: Located, fields: dict[str, dict[str, Field]]) -> Rule | None:
        rule_id = body.get("id")
        if not isinstance(rule_id, str) or not rule_id:
            self.problem(body.line, "a rule needs an id (a non-empty string)")
            rule_id = None
        what = f"rule {rule_id!r}" if rule_id else "rule"
        self.unknown_keys(body, RULE_KEYS, what)
        count = len(self.problems)
        severity = self.severity(body, what)
        event_types = self.event_types(body, what)
        escalate = body.get("escalate", False)
        if not isinstance(escalate, bool):
            self.problem(body.line_of("escalate"), f"{what}: escalate must be true or false")
        texts = {}
        for key in ("reason", "recommendation"):
            value = body.get(key)
            if not isinstance(value, str) or not value.strip():
                self.problem(body.line_of(key), f"{what}: {key} must be a non-empty string")
            else:
                texts[key] = value
        readable = _shared_fields(fields, event_types)
        for key, text in texts.items():
            self.placeholders(body.line_of(key), what, key, text, readable, event_types)
        program = None
        condition = body.get("when")
        if condition is not None:
            program = self.condition(body.line_of("when"), what, condition, fields, event_types)
        if rule_id is None or severity is None or len(self.problems) > count:
            return None
        return Rule(
            rule_id=rule_id,
            event_types=event_types,
            condition=condition,
            program=program,
            severity=severity,
            should_escalate=escalate,
            reason=texts["reason"],
            recommendation=texts["recommendation"],
            line=body.line,
        )

    def severity(self, body: Located, what: str) -> Severity | None:
        value = body.get("severity")
        if value is None:
            self.problem(body.line, f"{what}: severity is missing")
            return None
        try:
            return Severity(value)
        except ValueError:
            known = " | ".join(s.value for s in Severity)
            self.problem(body.line_of("severity"), f"{what}: unknown severity {value!r} ({known})")
            return None

    def event_types(self, body: Located, what: str) -> tuple[str, ...] | None:
        value = body.get("event_type")
        if value is None:
            return None
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            self.problem(
                body.line_of("event_type"), f"{what}: event_type is a name or a list of names"
            )
            return ()
        return tuple(dict.fromkeys(names))

    def placeholders(
        self,
        line: int,
        what: str,
        key: str,
        text: str,
        readable: set[str],
        event_types: tuple[str, ...] | None,
    ) -> None:
        names, bad = expressions.placeholders(text)
        for placeholder in bad:
            self.problem(
                line,
                f"{what}: {key}: {placeholder} is not a placeholder; write {{{{payload.FIELD}}}}",
            )
        for name in sorted(names - readable):
            self.problem(
                line, f"{what}: {key}: the placeholder reads {_undeclared(name, event_types)}"
            )

    def condition(
        self,
        line: int,
        what: str,
        condition: Any,
        fields: dict[str, dict[str, Field]],
        event_types: tuple[str, ...] | None,
    ) -> cel.Program | None:
        if not isinstance(condition, str) or not condition.strip():
            self.problem(line, f"{what}: when must be a CEL expression (a string)")
            return None
        program, problems = expressions.compile_condition(condition)
        for message in problems:
            self.problem(line, f"{what}: {message}")
        if program is None:
            return None
        names, opaque = expressions.payload_fields_read(program)
        if opaque:
            self.problem(
                line, f"{what}: read payload fields by name (payload.FIELD), not the whole payload"
            )
        readable = _shared_fields(fields, event_types)
        for name in sorted(names - readable):
            self.problem(line, f"{what}: the condition reads {_undeclared(name, event_types)}")
        if names - readable or opaque:
            return None
        for message in _never_equal(condition, fields, event_types or ()):
            self.problem(line, f"{what}: {message}")
        for message in _probe(program, fields, event_types):
            self.problem(line, f"{what}: {message}")
        return program

    # -- tests -----------------------------------------------------------------

    def tests(self, document: Located) -> list[TestCase]:
        entries = document.get("tests")
        if entries is None:
            return []
        if not isinstance(entries, list):
            self.problem(document.line_of("tests"), "tests must be a list")
            return []
        cases = []
        for entry in entries:
            body = self.mapping(entry, document.line_of("tests"), "a test")
            if body is not None:
                case = self.test(body)
                if case is not None:
                    cases.append(case)
        return cases

    def test(self, body: Located) -> TestCase | None:
        count = len(self.problems)
        self.unknown_keys(body, TEST_KEYS, "a test")
        event = self.mapping(body.get("event"), body.line_of("event"), "a test's event")
        expect = self.mapping(body.get("expect"), body.line_of("expect"), "a test's expect")
        if event is None or expect is None:
            return None
        self.unknown_keys(event, EVENT_KEYS, "a test's event")
        self.unknown_keys(expect, EXPECT_KEYS, "a test's expect")
        if not isinstance(event.get("event_type"), str):
            self.problem(event.line, "a test's event needs an event_type")
        if not isinstance(event.get("source"), str | None):
            self.problem(event.line_of("source"), "a test's source must be a string")
        payload = event.get("payload", {})
        if not isinstance(payload, Mapping):
            self.problem(event.line_of("payload"), "a test's payload must be a mapping")
        if not expect:
            self.problem(expect.line, "a test's expect names a rule, a severity or escalate")
        if len(self.problems) > count:
            return None
        return TestCase(body.line, event["event_type"], event.get("source"), payload, expect)


def _shared_fields(
    fields: Mapping[str, Mapping[str, Field]], event_types: tuple[str, ...] | None
) -> set[str]:
    """The fields a rule may read: those declared for every one of its event types."""
    if not event_types:
        return set()
    return set.intersection(*(set(fields.get(t, {})) for t in event_types))


def _undeclared(name: str, event_types: tuple[str, ...] | None) -> str:
    if event_types is None:
        return f"payload.{name}, but a rule for any event type can read no payload field"
    return f"payload.{name}, which is not declared for {', '.join(event_types)}"


# The kind of CEL value a declared type holds, as comparisons.Operand names kinds.
_KIND_OF_TYPE = {"number": "number", "integer": "number", "string": "string", "boolean": "boolean"}


def _never_equal(
    condition: str, fields: Mapping[str, Mapping[str, Field]], event_types: tuple[str, ...]
) -> list[str]:
    """Equality tests whose sides are of kinds that are never equal (see ``comparisons``)."""

    def kind(operand: comparisons.Operand, event_type: str) -> tuple[str, str] | None:
        if operand.field is None:
            return operand.kind or "", operand.text
        field = fields.get(event_type, {}).get(operand.field)
        if field is None:  # undeclared: reported already
            return None
        return _KIND_OF_TYPE[field.type.name], f"payload.{operand.field}"

    problems = []
    for event_type in event_types:
        for comparison in comparisons.comparisons(condition):
            left = kind(comparison.left, event_type)
            for operand in comparison.right:
                right = kind(operand, event_type)
                if left is None or right is None or left[0] == right[0]:
                    continue
                if "null" in (left[0], right[0]):
                    read = left if right[0] == "null" else right
                    problems.append(
                        f"{read[1]} is never null; test whether it has a value with has({read[1]})"
                    )
                else:
                    problems.append(
                        f"the condition compares {left[1]} (a {left[0]}) with {right[1]}"
                        f" (a {right[0]}), which are never equal"
                    )
        if problems:
            break
    return list(dict.fromkeys(problems))


def _probe(
    program: cel.Program,
    fields: Mapping[str, Mapping[str, Field]],
    event_types: tuple[str, ...] | None,
) -> list[str]:
    """Evaluate on probe events of the declared types: the wrong-type comparisons show now."""
    for event_type in event_types or ("any",):
        declared = fields.get(event_type, {}) if event_types else {}
        for round_number in range(PROBE_ROUNDS):
            values = probe_values(declared, round_number)
            context = {
                "event_type": event_type,
                "source": _PROBE_SOURCES[round_number],
                "payload": as_payload(values),
            }
            try:
                flat = expressions.context(
                    values, declared, {"event_type": event_type, "source": context["source"]}
                )
                result = program.execute(flat)
            except TypeError as exc:
                return [
                    "the condition combines values of different types "
                    f"(on {_describe(context)}): {expressions.first_line(str(exc))}"
                ]
            except Exception as exc:
                reason = expressions.first_line(str(exc))
                return [f"the condition fails on {_describe(context)}: {reason}"]
            if not isinstance(result, bool):
                return [f"the condition gives {result!r}, not true or false"]
    return []


def _describe(context: Mapping[str, Any]) -> str:
    event_type, source, payload = context["event_type"], context["source"], context["payload"]
    return f"event_type {event_type!r}, source {source!r}, payload {payload!r}"
