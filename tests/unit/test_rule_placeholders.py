"""Placeholder text is JSON's spelling of the value (strings as they are), whatever the value.

The engine fills placeholders from pieces split once per rule and spells the
common kinds without json.dumps; this checks that both give exactly what a
substitution with json.dumps gave, for any JSON value a stored payload holds.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from eventflo import rules

RULES = rules.load("""\
fields:
  disk_full:
    host: {type: string, default: "unknown"}
    percent: {type: number, default: 0}
rules:
  - id: templated
    event_type: disk_full
    severity: HIGH
    reason: "{{payload.host}}"
    recommendation: "Look at {{ payload.host }}: {{payload.percent}}% ({{payload.host}})"
  - id: default
    severity: LOW
    reason: nothing specific
    recommendation: keep for the record
""")

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


def _spelled(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@given(host=JSON_VALUES, percent=JSON_VALUES)
def test_each_placeholder_is_the_values_json_spelling(host, percent):
    # No condition reads the fields, so even ill-typed stored values are judged and spelled.
    verdict = RULES.classify("disk_full", None, {"host": host, "percent": percent})

    assert verdict.reason == _spelled(host)
    assert verdict.recommendation == (
        f"Look at {_spelled(host)}: {_spelled(percent)}% ({_spelled(host)})"
    )


def test_a_missing_field_is_spelled_as_its_default():
    verdict = RULES.classify("disk_full", None, {})
    assert (verdict.reason, verdict.recommendation) == ("unknown", "Look at unknown: 0% (unknown)")
