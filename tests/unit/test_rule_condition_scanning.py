"""Conditions that fool a naive scanner: comments, raw strings, hidden macros, shadowed names.

The engine rewrites ``payload.x`` to a flat variable and checks which fields a
condition reads; each case here once loaded wrongly (a runtime error on live
events, a literal changed behind the author's back, or an unbounded cost).
"""

from __future__ import annotations

import json

import pytest

from eventflo import rules

FILE = """fields:
  disk_full:
    percent: {type: number}
    host: {type: string, default: "unknown"}
rules:
  - id: matched
    event_type: disk_full
    when: %s
    severity: CRITICAL
    reason: "x"
    recommendation: "y"
  - id: default
    severity: LOW
    reason: "n"
    recommendation: "n"
"""

PRIMARY_FULL = {"percent": 95, "host": "db1"}
OTHER_EMPTY = {"percent": 10, "host": "db2"}


def _load(condition: str) -> rules.RuleSet:
    return rules.load(FILE % json.dumps(condition), run_tests=False)


def _verdicts(rule_set: rules.RuleSet, source: str = "billing") -> list[str]:
    return [rule_set.classify("disk_full", source, p).rule_id for p in (PRIMARY_FULL, OTHER_EMPTY)]


def test_a_quote_inside_a_comment_does_not_hide_the_code_after_it():
    rule_set = _load(
        "payload.host == \"db1\" // the primary's host\n && payload.percent >= 90 // don't page"
    )
    assert _verdicts(rule_set) == ["matched", "default"]


def test_a_field_read_after_a_commented_quote_is_still_checked():
    with pytest.raises(
        rules.RuleFileError, match="line 8: .*payload.nosuch, which is not declared"
    ):
        _load("payload.host == 'db1' // the primary's host\n && payload.nosuch >= 90")


def test_a_literal_after_a_commented_quote_is_not_rewritten():
    rule_set = _load("// don't\nsource == 'payload.host'")
    assert _verdicts(rule_set, source="payload.host") == ["matched", "matched"]
    assert _verdicts(rule_set, source="payload__host") == ["default", "default"]


def test_a_raw_string_ending_in_a_backslash_closes_where_cel_closes_it():
    rule_set = _load(r"source == r'C:\' && payload.percent > 1")
    assert _verdicts(rule_set, source="C:\\") == ["matched", "matched"]
    assert _verdicts(rule_set) == ["default", "default"]


def test_macros_split_by_comments_still_count_against_the_limit():
    nested = "[1,2].all(a, [1,2]. //\n exists(b, [1,2]. //\n exists(c, true)))"
    with pytest.raises(rules.RuleFileError, match="more than 2 list macros"):
        _load(nested)


@pytest.mark.parametrize("name", ["source", "event_type", "payload"])
def test_a_macro_variable_may_not_shadow_what_a_condition_sees(name):
    with pytest.raises(rules.RuleFileError, match=f"may not be named {name}"):
        _load(f"[1, 2].exists({name}, {name} > 1)")


def test_a_field_named_payload_of_something_else_is_left_alone():
    rule_set = _load("[{'payload': {'x': 1}}].exists(m, has(m.payload.x)) && payload.percent > 50")
    assert _verdicts(rule_set) == ["matched", "default"]
