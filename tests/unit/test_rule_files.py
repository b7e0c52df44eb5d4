"""Rule files: what loads, what conditions and placeholders see, and every refusal with its line."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventflo import rules
from eventflo.rules import Severity

FIELDS = """\
fields:
  disk_full:
    percent: {type: number}
    host: {type: string, default: unknown}
    mounted: {type: boolean, default: true}
    inodes: {type: integer, default: 0}
"""
CATCH_ALL = """\
  - id: default
    severity: LOW
    reason: nothing specific
    recommendation: keep for the record
"""


def rule(rule_id: str = "disk.rule", when: str | None = None, **extra: str) -> str:
    """One rule for disk_full as YAML text; ``extra`` overrides or adds keys (raw YAML values)."""
    keys = {
        "id": rule_id,
        "event_type": "disk_full",
        "severity": "HIGH",
        "reason": "r",
        "recommendation": "m",
    }
    if when is not None:
        keys["when"] = json.dumps(when)  # a JSON string is a YAML double-quoted scalar
    keys.update(extra)
    lines = [
        f"  - {k}: {v}" if i == 0 else f"    {k}: {v}" for i, (k, v) in enumerate(keys.items())
    ]
    return "\n".join(lines) + "\n"


def ruleset(*rule_texts: str, fields: str = FIELDS, tests: str = "") -> rules.RuleSet:
    return rules.load(fields + "rules:\n" + "".join(rule_texts) + CATCH_ALL + tests)


def judge(rs: rules.RuleSet, payload: dict, source: str | None = "tests") -> str:
    return rs.classify("disk_full", source, payload).rule_id


# -- what conditions see -------------------------------------------------------


def test_a_threshold_with_a_default_and_a_required_field():
    rs = ruleset(rule("big", "payload.percent >= 90 && payload.inodes == 0"))
    assert judge(rs, {"percent": 95}) == "big"
    assert judge(rs, {"percent": 95.5}) == "big"
    assert judge(rs, {"percent": 89.9}) == "default"
    assert judge(rs, {"percent": 95, "inodes": 3}) == "default"
    with pytest.raises(rules.RuleError, match=r"^rule big: payload.percent: Missing data"):
        judge(rs, {})


def test_string_match_membership_source_and_has():
    rs = ruleset(
        rule("db", "payload.host.startsWith('db') && payload.host in ['db1', 'db2']"),
        rule("billing", "source == 'billing'"),
        rule("matched", "payload.host.matches('^web[0-9]+$')"),
        rule("unmounted", "has(payload.mounted) && !payload.mounted"),
    )
    assert judge(rs, {"percent": 1, "host": "db1"}) == "db"
    assert judge(rs, {"percent": 1, "host": "db3"}) == "default"
    assert judge(rs, {"percent": 1}, source="billing") == "billing"
    assert judge(rs, {"percent": 1}, source=None) == "default"
    assert judge(rs, {"percent": 1, "host": "web12"}) == "matched"
    assert judge(rs, {"percent": 1, "mounted": False}) == "unmounted"


def test_conditions_see_only_declared_fields_and_undeclared_ones_are_ignored():
    rs = ruleset(rule("big", "payload.percent >= 90"))
    assert judge(rs, {"percent": 95, "percent2": "x", "nested": {"a": [1]}}) == "big"


def test_placeholders_are_filled_from_the_payload_and_defaults():
    rs = ruleset(
        rule(
            "big",
            "payload.percent >= 90",
            reason='"Disk on {{payload.host}} is {{ payload.percent }}% full"',
            recommendation='"Grow {{payload.host}} (mounted: {{payload.mounted}})"',
        )
    )
    verdict = rs.classify("disk_full", None, {"percent": 95.5, "host": "db1"})
    assert verdict.reason == "Disk on db1 is 95.5% full"
    assert verdict.recommendation == "Grow db1 (mounted: true)"
    assert rs.classify("disk_full", None, {"percent": 99}).reason == "Disk on unknown is 99% full"


def test_placeholders_are_substituted_once_never_interpreted():
    rs = ruleset(rule("big", reason='"{{payload.host}}"'))
    tricky = "{{payload.percent}} {0} %s ${HOME}"
    assert rs.classify("disk_full", None, {"percent": 1, "host": tricky}).reason == tricky


def test_an_event_is_judged_only_by_its_types_rules_and_the_wildcard_ones():
    rs = ruleset(rule("a"), rule("b", event_type="[other, disk_full]"))
    assert [r.rule_id for r in rs.rules_for("disk_full")] == ["a", "b", "default"]
    assert [r.rule_id for r in rs.rules_for("other")] == ["b", "default"]
    assert [r.rule_id for r in rs.rules_for("unheard_of")] == ["default"]


def test_explain_says_why_each_earlier_rule_did_not_match():
    rs = ruleset(rule("other", event_type="other"), rule("big", "payload.percent >= 90"))
    verdict, steps = rs.explain("disk_full", None, {"percent": 10})
    assert verdict.rule_id == "default"
    assert [(s.rule.rule_id, s.outcome) for s in steps] == [
        ("other", "event type differs"),
        ("big", "condition false"),
        ("default", "matched"),
    ]


def test_a_wrong_typed_stored_field_is_a_rule_error_naming_the_rule():
    rs = ruleset(rule("always"), rule("big", "payload.percent >= 90"))
    # The first rule has no condition, so the payload is never read.
    assert judge(rs, {"percent": "lots"}) == "always"
    rs = ruleset(rule("big", "payload.percent >= 90"))
    with pytest.raises(rules.RuleError, match=r"^rule big: payload.percent: Must be a finite"):
        judge(rs, {"percent": "lots"})


def test_a_field_no_condition_reads_does_not_fail_the_event():
    """Only the fields a condition reads are checked when judging; the API checks them all."""
    rs = ruleset(rule("big", "payload.percent >= 90", reason='"on {{payload.host}}"'))
    stored = {"percent": 95, "host": 7, "inodes": "many"}  # written around the API
    assert rs.field_errors("disk_full", stored).keys() == {"host", "inodes"}
    verdict = rs.classify("disk_full", None, stored)
    assert (verdict.rule_id, verdict.reason) == ("big", "on 7")


def test_an_error_no_probe_reaches_fails_the_event_with_the_rule_id():
    rs = ruleset(rule("odd", "payload.inodes == 7 && 100 / (payload.inodes - 7) > 1"))
    assert judge(rs, {"percent": 1, "inodes": 6}) == "default"
    with pytest.raises(rules.RuleError, match=r"^rule odd: division by zero"):
        judge(rs, {"percent": 1, "inodes": 7})


def test_huge_integers_are_compared_not_refused():
    rs = ruleset(rule("big", "payload.percent >= 90"))
    assert judge(rs, {"percent": 10**400}) == "big"
    assert judge(rs, {"percent": -(10**400)}) == "default"


# -- refusals ------------------------------------------------------------------

BAD_FILES = [
    # name, file text, the line, words the message must contain
    ("invalid YAML", FIELDS + "rules: [\n", 8, "invalid YAML"),
    ("not a mapping", "- 1\n", 1, "a rule file is a mapping"),
    ("unknown top key", "fieldz: {}\nrules:\n" + CATCH_ALL, 1, "unknown key 'fieldz'"),
    ("unknown rule key", FIELDS + "rules:\n" + rule(colour="red") + CATCH_ALL, 13, "colour"),
    (
        "unknown field key",
        "fields:\n  a:\n    b: {type: number, max: 3}\nrules:\n" + CATCH_ALL,
        3,
        "unknown key 'max'",
    ),
    (
        "unknown field type",
        "fields:\n  a:\n    b: {type: float}\nrules:\n" + CATCH_ALL,
        3,
        "type must be one of number",
    ),
    (
        "default of the wrong type",
        "fields:\n  a:\n    b: {type: number, default: x}\nrules:\n" + CATCH_ALL,
        3,
        "the default does not fit",
    ),
    (
        "missing id",
        FIELDS + "rules:\n" + rule().replace("  - id: disk.rule\n    ", "  - ") + CATCH_ALL,
        8,
        "needs an id",
    ),
    (
        "missing severity",
        FIELDS + "rules:\n" + rule().replace("    severity: HIGH\n", "") + CATCH_ALL,
        8,
        "severity is missing",
    ),
    (
        "unknown severity",
        FIELDS + "rules:\n" + rule(severity="URGENT") + CATCH_ALL,
        10,
        "unknown severity 'URGENT'",
    ),
    (
        "duplicate id",
        FIELDS + "rules:\n" + rule("a") + rule("a") + CATCH_ALL,
        13,
        "duplicate rule id 'a' (first at line 8)",
    ),
    (
        "duplicate key",
        FIELDS + "rules:\n" + rule() + "    severity: LOW\n" + CATCH_ALL,
        13,
        "appears twice",
    ),
    (
        "CEL syntax error",
        FIELDS + "rules:\n" + rule(when="payload.percent >=") + CATCH_ALL,
        13,
        "CEL syntax error",
    ),
    (
        "undeclared field",
        FIELDS + "rules:\n" + rule(when="payload.size > 3") + CATCH_ALL,
        13,
        "reads payload.size, which is not declared for disk_full",
    ),
    (
        "field of another type only",
        FIELDS
        + "rules:\n"
        + rule(when="payload.percent > 3", event_type="[disk_full, other]")
        + CATCH_ALL,
        13,
        "not declared for disk_full, other",
    ),
    (
        "wildcard reads a field",
        FIELDS
        + "rules:\n"
        + rule(when="payload.percent > 3").replace("    event_type: disk_full\n", "")
        + CATCH_ALL,
        12,
        "a rule for any event type can read no payload field",
    ),
    (
        "computed index",
        FIELDS + "rules:\n" + rule(when="payload[event_type] > 3") + CATCH_ALL,
        13,
        "by name",
    ),
    (
        "unknown variable",
        FIELDS + "rules:\n" + rule(when="percent > 3") + CATCH_ALL,
        13,
        "names percent",
    ),
    (
        "wrong type",
        FIELDS + "rules:\n" + rule(when="payload.host > 3") + CATCH_ALL,
        13,
        "different types",
    ),
    (
        "equality with a value of another type",
        FIELDS + "rules:\n" + rule(when='payload.percent == "full"') + CATCH_ALL,
        13,
        'compares payload.percent (a number) with "full" (a string), which are never equal',
    ),
    (
        "membership in a list of another type",
        FIELDS + "rules:\n" + rule(when="payload.host in [1, 2]") + CATCH_ALL,
        13,
        "compares payload.host (a string) with 1 (a number)",
    ),
    (
        "two fields of different types",
        FIELDS + "rules:\n" + rule(when="payload.mounted != payload.inodes") + CATCH_ALL,
        13,
        "compares payload.mounted (a boolean) with payload.inodes (a number)",
    ),
    (
        "a field compared with null",
        FIELDS + "rules:\n" + rule(when="payload.host == null") + CATCH_ALL,
        13,
        "payload.host is never null; test whether it has a value with has(payload.host)",
    ),
    (
        "number mixed with int arithmetic",
        FIELDS + "rules:\n" + rule(when="payload.percent / 2 > 1") + CATCH_ALL,
        13,
        "different types",
    ),
    (
        "not a boolean",
        FIELDS + "rules:\n" + rule(when="payload.percent") + CATCH_ALL,
        13,
        "not true or false",
    ),
    (
        "placeholder on an undeclared field",
        FIELDS + "rules:\n" + rule(reason="'on {{payload.hostname}}'") + CATCH_ALL,
        11,
        "payload.hostname",
    ),
    (
        "placeholder with an expression",
        FIELDS + "rules:\n" + rule(reason="'{{payload.host.upper()}}'") + CATCH_ALL,
        11,
        "is not a placeholder",
    ),
    ("no catch-all", FIELDS + "rules:\n" + rule(), 8, "no catch-all"),
    (
        "a rule after the catch-all",
        FIELDS + "rules:\n" + CATCH_ALL + rule("late"),
        12,
        "'late' can never match",
    ),
    (
        "failing test",
        FIELDS
        + "rules:\n"
        + rule("big", "payload.percent >= 90")
        + CATCH_ALL
        + "tests:\n  - event: {event_type: disk_full, payload: {percent: 50}}\n"
        "    expect: {rule: big}\n",
        19,
        "expected rule big; got rule default",
    ),
    (
        "test event that does not fit",
        FIELDS
        + "rules:\n"
        + CATCH_ALL
        + "tests:\n  - event: {event_type: disk_full, payload: {}}\n    expect: {rule: default}\n",
        13,
        "payload.percent: Missing data",
    ),
    ("file over 1 MiB", "# " + "x" * (1024 * 1024) + "\n", 1, "at most 1048576"),
    ("anchors and aliases", "a: &a [x, x]\nb: [*a, *a]\n", 1, "anchors and aliases"),
    (
        "expression over the limit",
        FIELDS + "rules:\n" + rule(when=" || ".join(["payload.percent > 1"] * 60)) + CATCH_ALL,
        13,
        "the limit is 1000",
    ),
    (
        "too many macros",
        FIELDS
        + "rules:\n"
        + rule(when="[1].all(x, [2].all(y, [3].exists(z, z > x + y)))")
        + CATCH_ALL,
        13,
        "more than 2 list macros",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "words"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_file_is_refused_naming_the_line(text, line, words):
    with pytest.raises(rules.RuleFileError) as refused:
        rules.load(text)
    messages = [str(p) for p in refused.value.problems]
    assert any(m.startswith(f"line {line}: ") and words in m for m in messages), messages


def test_every_problem_is_reported_not_just_the_first():
    text = FIELDS + "rules:\n" + rule(severity="URGENT") + rule(when="payload.nope") + rule()
    with pytest.raises(rules.RuleFileError) as refused:
        rules.load(text)
    lines = [p.line for p in refused.value.problems]
    assert lines == sorted(lines) and len(lines) >= 3, refused.value.problems
    assert str(refused.value).count("line ") == len(lines)


def test_a_billion_laughs_fails_fast():
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)
    ]
    started = time.perf_counter()
    with pytest.raises(rules.RuleFileError, match="anchors and aliases"):
        rules.load("\n".join(laughs) + "\n")
    assert time.perf_counter() - started < 1


# -- property ------------------------------------------------------------------

_PROPERTY_SET = ruleset(
    rule("big", "payload.percent >= 90 && payload.mounted"),
    rule("db", "payload.host.startsWith('db') || payload.inodes > 1000000"),
    rule("billing", "source == 'billing'", reason='"{{payload.host}} at {{payload.percent}}"'),
)
_numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
_fitting_payloads = st.fixed_dictionaries(
    {"percent": _numbers},
    optional={
        "host": st.text(alphabet=st.characters(exclude_categories=["Cs"])),
        "mounted": st.booleans(),
        "inodes": st.integers(),
        "extra": st.text(),
    },
)


@given(payload=_fitting_payloads, source=st.none() | st.sampled_from(["billing", "x", ""]))
def test_any_payload_that_fits_the_declarations_gets_one_verdict_every_time(payload, source):
    assert _PROPERTY_SET.field_errors("disk_full", payload) == {}
    first = _PROPERTY_SET.classify("disk_full", source, payload)
    assert first.severity in Severity
    assert _PROPERTY_SET.classify("disk_full", source, payload) == first


def test_the_condition_examples_of_the_docs_load_and_judge_as_they_say():
    examples = """\
fields:
  x:
    amount: {type: number}
    currency: {type: string, default: EUR}
    host: {type: string, default: unknown}
    region: {type: string, default: ""}
    message: {type: string, default: ""}
    disk.percent: {type: number, default: 0}
rules:
  - {id: two, event_type: x, when: 'payload.amount >= 1000 && payload.currency == "EUR"',
     severity: LOW, reason: r, recommendation: m}
  - {id: match, event_type: x, when: 'payload.host.startsWith("db")
       || payload.host.matches("^web[0-9]+$") || payload.message.contains("timeout")',
     severity: LOW, reason: r, recommendation: m}
  - {id: list, event_type: x, when: 'payload.region in ["eu-west-1", "eu-central-1"]',
     severity: LOW, reason: r, recommendation: m}
  - {id: source, event_type: x, when: 'source == "billing"', severity: LOW, reason: r,
     recommendation: m}
  - {id: has, event_type: x, when: 'has(payload.host) && payload.host != "unknown"',
     severity: LOW, reason: r, recommendation: m}
  - {id: double, event_type: x, when: 'double(payload.amount) / 2.0 > 10.0', severity: LOW,
     reason: r, recommendation: m}
  - {id: nested, event_type: x, when: 'payload.disk.percent >= 90', severity: LOW,
     reason: r, recommendation: m}
  - {id: default, severity: LOW, reason: r, recommendation: m}
"""
    rs = rules.load(examples)
    expected = [
        ({"amount": 1000}, None, "two"),
        ({"amount": 5, "host": "web1"}, None, "match"),
        ({"amount": 5, "message": "a timeout"}, None, "match"),
        ({"amount": 5, "region": "eu-west-1"}, None, "list"),
        ({"amount": 5}, "billing", "source"),
        ({"amount": 5, "host": "h"}, None, "has"),
        ({"amount": 30}, None, "double"),
        ({"amount": 5, "disk": {"percent": 95}}, None, "nested"),
        ({"amount": 5}, None, "default"),
    ]
    assert [rs.classify("x", s, p).rule_id for p, s, _ in expected] == [e for *_, e in expected]
