"""The ``rules-drain`` mode: what the rules cost the real drain, side by side in one run.

Four drains of ``--events`` events per run, each by the real worker
processes after its rule set was made the active version (the product's own
path, ``Bench.activate``), so the workers load and compile it as anywhere:

- ``catch_all``: one rule without a condition, on the shipped mix (the
  drain mode's events: payment_failed, sla_breach, system_error, user_signup);
- ``shipped``: the shipped rules, on the same events;
- ``catch_all_generated``: the catch-all again, on the generated set's events;
- ``generated``: the generated 200-rule set over 50 types (rule_speed's), on
  those events (its mix, realistic payloads of five fields).

What makes the comparison fair: each ratio divides drains of the very same
events, so it measures the rules alone, not a payload's size or a type's
share: shipped / catch-all on the shipped mix (target 90 %), generated /
catch-all on the generated mix (target 80 %; those payloads are about twice
the size of the shipped mix's, which costs the database, not the rules).
The four drains of a run follow each other directly and each run starts
with the next one in turn, so a machine that gets busier or quieter (the
bench's own database growing, another process) touches every way alike.
Every result is checked to name the version made active for its drain.
The version active before the mode is active again afterwards.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from psycopg.types.json import Jsonb

from eventflo import rules, ruleversions
from eventflo.bench import (
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Ratio,
    Sample,
    drain,
    figures,
    rule_speed,
)

SUMMARY = (
    "the drain judged by a catch-all rule, the shipped rules and a generated 200-rule set,"
    " interleaved in each run"
)

CATCH_ALL = """\
rules:
  - id: default
    severity: LOW
    escalate: false
    reason: "No specific rule for this event type"
    recommendation: "No action needed; keep for the record"
"""

SHIPPED_TARGET = 0.90
GENERATED_TARGET = 0.80

Fill = Callable[[Connection], int]


@dataclasses.dataclass(frozen=True)
class Way:
    """One way to drain: a rule set and the backlog it judges."""

    key: str
    label: str
    rule_set: rules.RuleSet
    fill: Fill | None  # None: the drain mode's shipped mix


def run(bench: Bench) -> ModeResult:
    events = bench.settings.events
    catch_all = rules.load(CATCH_ALL)
    generated = rules.load(rule_speed.generated_rule_file())
    generated_fill = _queue(rule_speed.generated_mix(events, random.Random(rule_speed.SEED)))
    size = len(generated.rules)
    ways = (
        Way("catch_all", "catch-all rule, shipped mix", catch_all, None),
        Way("shipped", "shipped rules, shipped mix", rules.default(), None),
        Way("catch_all_generated", "catch-all rule, generated mix", catch_all, generated_fill),
        Way("generated", f"generated {size} rules, generated mix", generated, generated_fill),
    )
    with bench.connect("setup") as conn:
        before = ruleversions.active_number(conn)
    turn = iter(range(len(ways) * bench.settings.runs))

    def once() -> Sample:
        start = next(turn) % len(ways)
        sample: Sample = {}
        for way in (*ways[start:], *ways[:start]):
            sample[f"{way.key}_events_per_s"] = _drain(bench, way)
        return sample

    try:
        samples = bench.repeat("rules-drain", once)
    finally:
        with bench.connect("setup") as conn:
            ruleversions.rollback(conn, before, activated_by="eventflo bench")
    result = figures(samples, [(f"{way.key}_events_per_s", way.label, "events/s") for way in ways])
    medians = {figure.key: figure.median for figure in result}
    return ModeResult(
        "rules-drain",
        result,
        (
            _ratio(medians, "shipped", "catch_all", "shipped rules", SHIPPED_TARGET),
            _ratio(
                medians,
                "generated",
                "catch_all_generated",
                f"generated {size} rules",
                GENERATED_TARGET,
            ),
        ),
    )


def _drain(bench: Bench, way: Way) -> float:
    """One timed drain judged by ``way``'s rules: its events/s."""
    with bench.connect("setup") as conn:
        version = bench.activate(conn, way.rule_set, message=f"eventflo bench: {way.label}")
    bench.progress(f"rules-drain: {way.label} (version {version})")
    sample = drain.drain_once(bench, clear="truncate_events", fill=way.fill)
    with bench.connect("verify") as conn:
        row = conn.execute(QUERIES["results_of_other_versions"], {"version": version}).fetchone()
    if row is None or row["events"]:
        raise BenchError(
            f"{way.label}: {row['events'] if row else '?'} result(s) name another rule version"
            f" than {version}, the one made active for this drain"
        )
    return sample["events_per_s"]


def _queue(events: Sequence[rule_speed.Event]) -> Fill:
    """A backlog of these events (their source is the bench's, as every drained event's)."""
    event_types = [event_type for event_type, _, _ in events]
    payloads = [Jsonb(payload) for _, _, payload in events]

    def fill(conn: Connection) -> int:
        conn.execute(
            QUERIES["insert_given_events"], {"event_types": event_types, "payloads": payloads}
        )
        return len(events)

    return fill


def _ratio(medians: dict[str, float], top: str, bottom: str, what: str, target: float) -> Ratio:
    return Ratio(
        f"rules_drain_{top}_vs_{bottom}",
        f"drain with {what} / with a catch-all rule, same events (events/s)",
        medians[f"{top}_events_per_s"] / medians[f"{bottom}_events_per_s"],
        target,
    )
