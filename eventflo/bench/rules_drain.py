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
The two drains of a pair follow each other directly, every other run in
the reverse order, and each ratio is the median of the runs' own ratios:
a machine that gets busier or quieter between runs (another process, a
checkpoint) moves both sides of a pair alike.
Every result is checked to name the version made active for its drain.
The version active before the mode is active again afterwards.

Two rates per drain. The ratios use the warm one: from the moment every
worker process had finished its first batch to the last completion. Before
that moment each process loads and compiles the version it was started
after (once per process and activation: 0.05 s for the generated set, a
tenth of a 20,000-event drain here), which says nothing about what the
rules cost per event. The whole drain (first claim to last completion, as
the drain mode counts) is reported beside it.
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
    runs = iter(range(bench.settings.runs))

    def once() -> Sample:
        sample: Sample = {}
        for way in _order(ways, next(runs)):
            steady, whole = _drain(bench, way)
            sample[f"{way.key}_events_per_s"] = steady
            sample[f"{way.key}_events_per_s_whole"] = whole
        sample["shipped_ratio"] = sample["shipped_events_per_s"] / sample["catch_all_events_per_s"]
        sample["generated_ratio"] = (
            sample["generated_events_per_s"] / sample["catch_all_generated_events_per_s"]
        )
        return sample

    try:
        samples = bench.repeat("rules-drain", once)
    finally:
        with bench.connect("setup") as conn:
            ruleversions.rollback(conn, before, activated_by="eventflo bench")
    result = figures(
        samples,
        [(f"{way.key}_events_per_s", way.label, "events/s") for way in ways]
        + [
            (f"{way.key}_events_per_s_whole", f"{way.label}, whole drain", "events/s")
            for way in ways
        ]
        + [
            ("shipped_ratio", "shipped / catch-all, each run", "ratio"),
            ("generated_ratio", f"generated {size} / catch-all, each run", "ratio"),
        ],
    )
    by_key = {figure.key: figure.median for figure in result}
    return ModeResult(
        "rules-drain",
        result,
        (
            Ratio(
                "rules_drain_shipped_vs_catch_all",
                "drain with the shipped rules / with a catch-all rule (median of the runs' ratios)",
                by_key["shipped_ratio"],
                SHIPPED_TARGET,
            ),
            Ratio(
                "rules_drain_generated_vs_catch_all",
                f"drain with generated {size} rules / with a catch-all rule (median of the runs'"
                " ratios)",
                by_key["generated_ratio"],
                GENERATED_TARGET,
            ),
        ),
    )


def _order(ways: Sequence[Way], run_number: int) -> list[Way]:
    """The run's drains: each pair compared side by side, every other run in reverse order.

    So each ratio divides two neighbouring drains, and a drift over the run
    (a checkpoint, another process) favours each side of a pair equally often.
    """
    ordered = list(ways)
    return ordered[::-1] if run_number % 2 else ordered


def _drain(bench: Bench, way: Way) -> tuple[float, float]:
    """One timed drain judged by ``way``'s rules: events/s once every worker is warm, and whole."""
    with bench.connect("setup") as conn:
        version = bench.activate(conn, way.rule_set, message=f"eventflo bench: {way.label}")
    bench.progress(f"rules-drain: {way.label} (version {version})")
    sample = drain.drain_once(bench, clear="truncate_events", fill=way.fill)
    with bench.connect("verify") as conn:
        row = conn.execute(QUERIES["results_of_other_versions"], {"version": version}).fetchone()
        steady = conn.execute(QUERIES["steady_drain_window"]).fetchone()
    if row is None or row["events"]:
        raise BenchError(
            f"{way.label}: {row['events'] if row else '?'} result(s) name another rule version"
            f" than {version}, the one made active for this drain"
        )
    whole = sample["events_per_s"]
    if steady is None or not steady["events"] or not steady["seconds"] or steady["seconds"] <= 0:
        # A drain so short that one worker's first batch was among the last: no warm window.
        bench.progress(
            f"rules-drain: {way.label}: no event finished after every worker's first batch;"
            " its warm rate is the whole drain's (drain more events for a warm one)"
        )
        return whole, whole
    return steady["events"] / steady["seconds"], whole


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
