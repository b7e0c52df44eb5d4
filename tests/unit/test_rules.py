"""The default rule table, boundary by boundary, plus totality and determinism for any payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventflo import rules
from eventflo.rules import Severity

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
    verdict = rules.classify_event(event_type, payload)
    assert (verdict.severity, verdict.should_escalate, verdict.rule_id) == (
        severity,
        escalate,
        rule_id,
    )
    assert verdict.reason and verdict.recommendation


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("payment_failed", {"amount": "lots"}),
        ("payment_failed", {"amount": None}),
        ("payment_failed", {"amount": True}),
        ("payment_failed", {"amount": [1000]}),
        ("payment_failed", {"amount": float("nan")}),
        ("sla_breach", {"minutes_over": "31"}),
        ("sla_breach", {"minutes_over": float("inf")}),
    ],
)
def test_ill_typed_fields_are_rule_errors(event_type, payload):
    with pytest.raises(rules.RuleError, match="must be a finite number"):
        rules.classify_event(event_type, payload)
    assert rules.payload_errors(event_type, payload)


def test_payload_errors_name_the_field():
    assert rules.payload_errors("payment_failed", {"amount": "lots"}) == {
        "amount": "Must be a finite number."
    }
    assert rules.payload_errors("payment_failed", {"amount": 12}) == {}
    assert rules.payload_errors("other", {"amount": "lots"}) == {}


def test_every_rule_id_is_unique_and_the_table_ends_with_a_catch_all():
    ids = [rule.rule_id for rule in rules.DEFAULT_RULES]
    assert len(ids) == len(set(ids))
    assert rules.DEFAULT_RULES[-1].event_type is None


def test_a_table_without_catch_all_raises_rule_error():
    with pytest.raises(rules.RuleError, match="no rule matches"):
        rules.classify_event("other", {}, rules=rules.DEFAULT_RULES[:-1])


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
    """Any JSON object gets a verdict, or a RuleError exactly when payload_errors reports one."""
    errors = rules.payload_errors(event_type, payload)
    try:
        first = rules.classify_event(event_type, payload)
    except rules.RuleError:
        assert errors
        return
    assert not errors
    assert rules.classify_event(event_type, payload) == first
    assert first.severity in Severity
