"""The shipped rule set, boundary by boundary, plus totality and determinism for any payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventflo import rules
from eventflo.rules import Severity, expressions

CASES = [
    # event_type, payload, severity, escalate, rule_id
    ("payment_failed", {"amount": 1500}, Severity.CRITICAL, True, "payment_failed.large"),
    ("payment_failed", {"amount": 1000}, Severity.CRITICAL, True, "payment_failed.large"),
    ("payment_failed", {"amount": 1000.0}, Severity.CRITICAL, True, "payment_failed.large"),
    ("payment_failed", {"amount": 999.99}, Severity.HIGH, False, "payment_failed.small"),
    ("payment_failed", {"amount": 0}, Severity.HIGH, False, "payment_failed.small"),
    ("payment_failed", {"amount": -5}, Severity.HIGH, False, "payment_failed.small"),
    ("payment_failed", {"amount": 10**400}, Severity.CRITICAL, True, "payment_failed.large"),
    ("payment_failed", {"amount": -(10**400)}, Severity.HIGH, False, "payment_failed.small"),
    ("payment_failed", {}, Severity.HIGH, False, "payment_failed.small"),
    ("payment_failed", {"currency": "EUR"}, Severity.HIGH, False, "payment_failed.small"),
    ("sla_breach", {"minutes_over": 30}, Severity.HIGH, True, "sla_breach.major"),
    ("sla_breach", {"minutes_over": 45.5}, Severity.HIGH, True, "sla_breach.major"),
    ("sla_breach", {"minutes_over": 29}, Severity.WARNING, False, "sla_breach.minor"),
    ("sla_breach", {"minutes_over": 29.999}, Severity.WARNING, False, "sla_breach.minor"),
    ("sla_breach", {}, Severity.WARNING, False, "sla_breach.minor"),
    ("system_error", {}, Severity.CRITICAL, True, "system_error"),
    ("system_error", {"amount": "not read here"}, Severity.CRITICAL, True, "system_error"),
    ("user_signup", {"amount": 10**6}, Severity.LOW, False, "default"),
    ("payment_failed.v2", {"amount": 5000}, Severity.LOW, False, "default"),
]


@pytest.mark.parametrize(("event_type", "payload", "severity", "escalate", "rule_id"), CASES)
def test_default_rules(event_type, payload, severity, escalate, rule_id):
    verdict = rules.default().classify(event_type, "tests", payload)
    assert (verdict.severity, verdict.should_escalate, verdict.rule_id) == (
        severity,
        escalate,
        rule_id,
    )
    assert verdict.reason and verdict.recommendation


@pytest.mark.parametrize(
    ("event_type", "payload", "field", "message"),
    [
        ("payment_failed", {"amount": "lots"}, "amount", "Must be a finite number."),
        ("payment_failed", {"amount": None}, "amount", "Must be a finite number."),
        ("payment_failed", {"amount": True}, "amount", "Must be a finite number."),
        ("payment_failed", {"amount": [1000]}, "amount", "Must be a finite number."),
        ("payment_failed", {"amount": float("nan")}, "amount", "Must be a finite number."),
        ("sla_breach", {"minutes_over": "31"}, "minutes_over", "Must be a finite number."),
        ("sla_breach", {"minutes_over": float("inf")}, "minutes_over", "Must be a finite number."),
    ],
)
def test_ill_typed_fields_are_field_errors_and_rule_errors_naming_the_rule(
    event_type, payload, field, message
):
    shipped = rules.default()
    assert shipped.field_errors(event_type, payload) == {field: message}
    with pytest.raises(rules.RuleError) as raised:
        shipped.classify(event_type, None, payload)
    assert (
        str(raised.value) == f"rule {event_type}.{_FIRST[event_type]}: payload.{field}: {message}"
    )


# The rule of each type whose condition reads the field, so the one that fails.
_FIRST = {"payment_failed": "large", "sla_breach": "major"}


def test_field_errors_only_for_declared_fields_of_the_events_type():
    shipped = rules.default()
    assert shipped.field_errors("payment_failed", {"amount": 12}) == {}
    assert shipped.field_errors("payment_failed", {}) == {}  # a default makes it optional
    assert shipped.field_errors("other", {"amount": "lots"}) == {}


def test_the_shipped_set_is_the_packaged_file_its_tests_pass_and_it_ends_with_a_catch_all():
    shipped = rules.default()
    assert shipped.text == rules.default_text()
    assert shipped.run_tests() == []
    assert len(shipped.tests) >= len(shipped.rules)
    covered = {case.expect["rule"] for case in shipped.tests}
    assert covered == {rule.rule_id for rule in shipped.rules}
    assert shipped.rules[-1].event_types is None and shipped.rules[-1].program is None
    assert rules.default() is shipped, "compiled once per process"


def test_the_canonical_form_loads_back_to_the_same_verdicts():
    shipped = rules.default()
    again = rules.load(shipped.canonical())
    assert again.canonical() == shipped.canonical()
    for event_type, payload, *_ in CASES:
        assert again.classify(event_type, None, payload) == shipped.classify(
            event_type, None, payload
        )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**308)  # beyond any double: must not overflow
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
event_types = st.sampled_from(["payment_failed", "sla_breach", "system_error", "user_signup"])
field_names = st.sampled_from(["amount", "minutes_over", "other"])
payloads = st.dictionaries(field_names | st.text(), json_values, max_size=5)


@given(event_type=event_types, payload=payloads)
def test_total_and_deterministic_for_any_json_object(event_type, payload):
    """Any JSON object gets a verdict, or a RuleError exactly when field_errors reports one."""
    shipped = rules.default()
    errors = shipped.field_errors(event_type, payload)
    try:
        first = shipped.classify(event_type, None, payload)
    except rules.RuleError:
        assert errors
        return
    assert not errors
    assert shipped.classify(event_type, None, payload) == first
    assert first.severity in Severity


# -- the flat context the conditions run on ---------------------------------------------------

FLAT_RULES = """\
fields:
  disk_full:
    percent: {type: number}
    host: {type: string, default: "unknown"}
    label: {type: string, default: "payload.host"}
rules:
  - id: named
    event_type: disk_full
    when: 'payload["percent"] > 50 && payload.label == "payload.host" && has(payload.host)'
    severity: HIGH
    reason: "r"
    recommendation: "r"
  - id: default
    severity: LOW
    reason: "r"
    recommendation: "r"
"""


def test_payload_reads_run_as_flat_variables_and_literals_stay_as_written():
    flat = expressions.flatten(
        'has(payload.host) && payload["percent"] >= 90 && payload . host != "payload.host"'
    )
    assert flat == (
        'has__payload__host && payload__percent >= 90 && payload__host != "payload.host"'
    )
    rule_set = rules.load(FLAT_RULES)
    assert rule_set.classify("disk_full", None, {"percent": 60}).rule_id == "named"
    assert rule_set.classify("disk_full", None, {"percent": 60, "label": "x"}).rule_id == "default"
    assert rule_set.classify("disk_full", None, {"percent": 10}).rule_id == "default"
    with pytest.raises(rules.RuleError, match=r"rule named: payload\.percent: Missing data"):
        rule_set.classify("disk_full", None, {})


def test_a_macro_variable_may_not_take_a_flat_variables_name():
    program, problems = expressions.compile_condition("[1].all(payload__x, payload__x > 0)")
    assert program is None
    assert problems == [
        "a macro variable may not start with payload__ or has__payload__: payload__x"
    ]
