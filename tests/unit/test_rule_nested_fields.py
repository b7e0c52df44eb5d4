"""Nested fields: ``disk.percent`` declares ``{"disk": {"percent": ...}}`` for conditions,
placeholders, has() and the API's checks, and nothing else can be read through it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventflo import rules
from eventflo.rules import Severity, expressions

NESTED = """\
fields:
  disk_full:
    disk.percent: {type: number}
    disk.mount_point: {type: string, default: /}
    host.name: {type: string, default: unknown}
    host.labels.tier: {type: string, default: ""}
    disk_percent: {type: number, default: -1}
rules:
  - id: disk_full.critical
    event_type: disk_full
    when: payload.disk.percent >= 90 && payload.disk.mount_point.startsWith("/data")
    severity: CRITICAL
    escalate: true
    reason: >-
      {{payload.disk.mount_point}} on {{ payload.host.name }} is {{payload.disk.percent}}% full
    recommendation: "Grow {{payload.disk.mount_point}} ({{payload.host.labels.tier}})"
  - id: disk_full.tiered
    event_type: disk_full
    when: has(payload.host.labels.tier) && payload.host.labels.tier in ["gold", "silver"]
    severity: HIGH
    reason: tiered
    recommendation: look
  - id: disk_full.flat
    event_type: disk_full
    when: payload["disk_percent"] >= 0
    severity: WARNING
    reason: flat
    recommendation: look
  - id: default
    severity: LOW
    reason: nothing specific
    recommendation: keep for the record
tests:
  - event: {event_type: disk_full, payload: {disk: {percent: 95, mount_point: /data}}}
    expect: {rule: disk_full.critical, severity: CRITICAL, escalate: true}
"""


_NESTED = rules.load(NESTED)


@pytest.fixture
def nested() -> rules.RuleSet:
    return _NESTED


def judge(rs: rules.RuleSet, payload: dict) -> str:
    return rs.classify("disk_full", None, payload).rule_id


def test_conditions_read_nested_values_and_their_defaults(nested):
    assert judge(nested, {"disk": {"percent": 95, "mount_point": "/data/pg"}}) == (
        "disk_full.critical"
    )
    assert judge(nested, {"disk": {"percent": 95}}) == "default"  # mount_point defaults to "/"
    assert judge(nested, {"disk": {"percent": 50}, "host": {"labels": {"tier": "gold"}}}) == (
        "disk_full.tiered"
    )


def test_a_nested_path_and_a_top_level_name_that_look_alike_stay_apart(nested):
    # disk.percent and disk_percent would both flatten to disk_percent without escaping.
    assert expressions.flat_name("disk.percent") != expressions.flat_name("disk_percent")
    assert judge(nested, {"disk": {"percent": 5}, "disk_percent": 0}) == "disk_full.flat"
    assert judge(nested, {"disk": {"percent": 5}}) == "default"


def test_placeholders_are_filled_from_nested_values_and_defaults(nested):
    verdict = nested.classify(
        "disk_full", None, {"disk": {"percent": 97.5, "mount_point": "/data"}, "host": {}}
    )
    assert verdict.severity is Severity.CRITICAL
    assert verdict.reason == "/data on unknown is 97.5% full"
    assert verdict.recommendation == "Grow /data ()"


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({}, {"disk.percent": "Missing data for required field."}),
        ({"disk": {}}, {"disk.percent": "Missing data for required field."}),
        ({"disk": {"percent": "95"}}, {"disk.percent": "Must be a finite number."}),
        (
            {"disk": 95},
            {
                "disk.percent": "Must be inside an object, and payload.disk is not one.",
                "disk.mount_point": "Must be inside an object, and payload.disk is not one.",
            },
        ),
        (
            {"disk": {"percent": 1}, "host": {"labels": "gold"}},
            {"host.labels.tier": "Must be inside an object, and payload.host.labels is not one."},
        ),
        ({"disk": {"percent": 1}, "host": {"name": 7}}, {"host.name": "Must be a string."}),
        ({"disk": {"percent": 1}, "host": {"labels": {}}}, {}),
    ],
)
def test_the_api_checks_name_the_nested_field(nested, payload, errors):
    assert nested.field_errors("disk_full", payload) == errors


def test_a_stored_event_of_the_wrong_shape_fails_naming_the_rule_and_field(nested):
    with pytest.raises(rules.RuleError, match=r"^rule disk_full.critical: payload.disk.percent: "):
        judge(nested, {"disk": [95]})


def test_a_top_level_key_with_a_dot_is_not_a_nested_value(nested):
    assert nested.field_errors("disk_full", {"disk.percent": 95}) == {
        "disk.percent": "Missing data for required field."
    }


FIELDS = "fields:\n  disk_full:\n    disk.percent: {type: number}\n"
CATCH_ALL = "  - {id: default, severity: LOW, reason: r, recommendation: m}\n"


def refusal(fields: str, when: str = "true") -> str:
    text = f"{fields}rules:\n  - {{id: x, event_type: disk_full, when: '{when}', severity: LOW,"
    text += f" reason: r, recommendation: m}}\n{CATCH_ALL}"
    with pytest.raises(rules.RuleFileError) as refused:
        rules.load(text)
    return str(refused.value)


@pytest.mark.parametrize(
    ("fields", "when", "words"),
    [
        (FIELDS, "payload.disk > 1", "reads payload.disk, which is not declared"),
        (FIELDS, "has(payload.disk)", "reads payload.disk, which is not declared"),
        (FIELDS, "payload.disk.inodes > 1", "reads payload.disk.inodes, which is not declared"),
        (FIELDS, 'payload["disk.percent"] > 1', "read payload fields by name"),
        (FIELDS, 'payload.disk.percent > "full"', "different types"),
        (FIELDS + "    disk: {type: number}\n", "true", "disk is declared as a value"),
        ("fields:\n  disk_full:\n    disk..percent: {type: number}\n", "true", "joined by dots"),
        ("fields:\n  disk_full:\n    disk.1: {type: number}\n", "true", "joined by dots"),
    ],
)
def test_nested_reads_and_declarations_that_cannot_work_are_refused(fields, when, words):
    assert words in refusal(fields, when)


_PROPERTY_PAYLOADS = st.fixed_dictionaries(
    {
        "disk": st.fixed_dictionaries(
            {"percent": st.integers() | st.floats(allow_nan=False, allow_infinity=False)},
            optional={"mount_point": st.text(alphabet=st.characters(exclude_categories=["Cs"]))},
        )
    },
    optional={
        "host": st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(alphabet=st.characters(exclude_categories=["Cs"])),
                "labels": st.fixed_dictionaries({}, optional={"tier": st.sampled_from(["gold"])}),
            },
        ),
        "disk_percent": st.integers(),
    },
)


@given(payload=_PROPERTY_PAYLOADS)
def test_any_nested_payload_that_fits_gets_one_verdict_every_time(payload):
    nested = _NESTED
    assert nested.field_errors("disk_full", payload) == {}
    first = nested.classify("disk_full", None, payload)
    assert nested.classify("disk_full", None, payload) == first
