"""The rules bench's generated set and event mixes: what its figures are a measure of."""

from __future__ import annotations

import collections
import random

from eventflo import rules
from eventflo.bench import rule_speed


def _verdicts(ruleset: rules.RuleSet, events: list[rule_speed.Event]) -> collections.Counter[str]:
    """How many events each rule (by its last id part: ``region``, ``default``) judged."""
    return collections.Counter(
        ruleset.classify(*event).rule_id.rsplit(".", 1)[-1] for event in events
    )


def test_the_generated_set_has_200_typed_rules_over_50_types():
    ruleset = rules.load(rule_speed.generated_rule_file())

    typed = [rule for rule in ruleset.rules if rule.event_types is not None]
    assert len(typed) == 200
    assert len({t for rule in typed for t in rule.event_types or ()}) == 50
    assert [rule.rule_id for rule in ruleset.rules if rule.event_types is None] == [
        "canary",
        "default",
    ]
    # An event is judged by its own type's four rules and the two wildcard ones only.
    assert len(ruleset.rules_for(rule_speed.generated_type(7))) == 6
    assert len(ruleset.rules_for("user_signup")) == 2
    conditions = " ".join(rule.condition or "" for rule in typed[:4])
    for construct in (">=", "startsWith(", " in [", "has(payload.host)"):
        assert construct in conditions


def test_the_generated_mix_mostly_matches_a_middle_rule_and_some_the_catch_all():
    ruleset = rules.load(rule_speed.generated_rule_file())
    events = rule_speed.generated_mix(5000, random.Random(1))

    verdicts = _verdicts(ruleset, events)
    assert verdicts.most_common(1)[0][0] == "region"  # third of its type's four rules
    assert 0.15 < verdicts["default"] / len(events) < 0.35
    assert set(verdicts) == {"critical", "database", "region", "unverified", "default", "canary"}
    # Every event fits its type's declarations, so none is judged by a failing rule.
    assert all(not ruleset.field_errors(t, p) for t, _, p in events)


def test_the_shipped_mix_reaches_every_shipped_rule():
    events = rule_speed.shipped_mix(5000, random.Random(1))

    verdicts = _verdicts(rules.default(), events)
    assert set(verdicts) == {"large", "small", "major", "minor", "system_error", "default"}
    assert 0.1 < verdicts["default"] / len(events) < 0.3


def test_the_mixes_are_the_same_every_run():
    assert rule_speed.generated_mix(100, random.Random(rule_speed.SEED)) == (
        rule_speed.generated_mix(100, random.Random(rule_speed.SEED))
    )


def test_the_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert rule_speed.percentile(values, 0.99) == 99
    assert rule_speed.percentile(values, 0.5) == 50
    assert rule_speed.percentile([7], 0.99) == 7
