"""The ``rules`` mode: what one classification costs, in µs, with the shipped and a large rule set.

No database: the engine is pure, so this times ``RuleSet.classify`` alone,
one call at a time, on a fixed mix of events (``--events`` per set and run).
Two sets: the shipped one, and a generated one of 200 typed rules over 50
event types (a threshold, a string match with a threshold, membership in a
list, and ``has()`` with a boolean, per type) between a wildcard rule on the
source and the catch-all. Each event is judged only by its own type's rules
and the wildcard ones, so the large set should cost about what the shipped
one does; the figures say whether it does.

The mixes are what a real stream looks like: most events match a rule in
the middle of their type's list, some match nothing and reach the
catch-all, some are of types no rule names. Each call is timed with
``perf_counter_ns``; the same loop around a call that does nothing gives
the timer's own cost, which is subtracted.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventflo import rules
from eventflo.bench import Bench, ModeResult, figures

SUMMARY = "µs per classification (median, p99): the shipped rules and a generated 200-rule set"

# This mode times the engine alone: bench.run skips the scratch database when only it runs.
NEEDS_DATABASE = False

GENERATED_TYPES = 50
# Calls made before timing, so the first calls' warm-up does not count.
WARM_UP = 1000
# The same mixes every run, so runs differ only in timing.
SEED = 20261202

Event = tuple[str, str | None, dict[str, Any]]
Classify = Callable[[str, str | None, dict[str, Any]], object]

REGIONS = ("eu-west-1", "eu-central-1", "ap-south-1")
OTHER_REGIONS = ("us-east-1", "us-west-2", "sa-east-1")


def generated_type(number: int) -> str:
    return f"service{number:02d}.alert"


def generated_rule_file(types: int = GENERATED_TYPES) -> str:
    """A rule file of ``4 * types`` typed rules, a wildcard rule first and the catch-all last."""
    fields = []
    typed = []
    for number in range(types):
        name = generated_type(number)
        fields.append(
            f"  {name}:\n"
            "    value: {type: number}\n"
            '    host: {type: string, default: "unknown"}\n'
            '    region: {type: string, default: "unknown"}\n'
            "    retries: {type: integer, default: 0}\n"
            "    verified: {type: boolean, default: false}\n"
        )
        typed.append(
            _rule(
                f"{name}.critical",
                name,
                "payload.value >= 95.0 && payload.retries > 3",
                "CRITICAL",
                "{{payload.host}} is at {{payload.value}} after {{payload.retries}} retries",
            )
            + _rule(
                f"{name}.database",
                name,
                'payload.host.startsWith("db-") && payload.value >= 80.0',
                "HIGH",
                "Database host {{payload.host}} is at {{payload.value}}",
            )
            + _rule(
                f"{name}.region",
                name,
                f"payload.region in {list(REGIONS)!r} && payload.value >= 50.0".replace("'", '"'),
                "WARNING",
                "{{payload.region}} is at {{payload.value}}",
            )
            + _rule(
                f"{name}.unverified",
                name,
                "has(payload.host) && !payload.verified && payload.value >= 20.0",
                "LOW",
                "Unverified reading from {{payload.host}}",
            )
        )
    canary = (
        "  - id: canary\n"
        '    when: source == "canary"\n'
        "    severity: LOW\n"
        '    reason: "A canary event"\n'
        '    recommendation: "None"\n'
    )
    catch_all = (
        "  - id: default\n"
        "    severity: LOW\n"
        '    reason: "No specific rule for this event type"\n'
        '    recommendation: "None"\n'
    )
    return "fields:\n" + "".join(fields) + "rules:\n" + canary + "".join(typed) + catch_all


def _rule(rule_id: str, event_type: str, when: str, severity: str, reason: str) -> str:
    return (
        f"  - id: {rule_id}\n"
        f"    event_type: {event_type}\n"
        f"    when: '{when}'\n"
        f"    severity: {severity}\n"
        f"    escalate: {'true' if severity == 'CRITICAL' else 'false'}\n"
        f'    reason: "{reason}"\n'
        '    recommendation: "Look at the service"\n'
    )


def shipped_mix(count: int, rng: random.Random) -> list[Event]:
    """Events for the shipped rules: most match a middle rule, a fifth the catch-all."""
    makers: Sequence[tuple[float, Callable[[], Event]]] = (
        (0.10, lambda: ("payment_failed", "billing", _payment(rng.uniform(1000, 9000), rng))),
        (0.30, lambda: ("payment_failed", "billing", _payment(rng.uniform(1, 999), rng))),
        (0.10, lambda: ("sla_breach", "support", {"minutes_over": rng.randint(30, 300)})),
        (0.25, lambda: ("sla_breach", "support", {"minutes_over": rng.randint(0, 29)})),
        (0.05, lambda: ("system_error", "api", {"message": "upstream timed out"})),
        (0.20, lambda: (rng.choice(("user_signup", "page_view", "login")), "web", {"n": 1})),
    )
    return _mix(count, rng, makers)


def _payment(amount: float, rng: random.Random) -> dict[str, Any]:
    return {"amount": round(amount, 2), "currency": "EUR", "customer": f"c{rng.randint(1, 9999)}"}


def generated_mix(count: int, rng: random.Random) -> list[Event]:
    """Events for the generated set: most match its middle rule (region), some nothing."""

    def reading(value: tuple[float, float], **extra: Any) -> Event:
        payload: dict[str, Any] = {
            "value": round(rng.uniform(*value), 1),
            "host": f"web-{rng.randint(1, 40)}",
            "region": rng.choice(OTHER_REGIONS),
            "verified": True,
            "unit": "percent",
        }
        payload.update(extra)
        return (generated_type(rng.randrange(GENERATED_TYPES)), "agent", payload)

    makers: Sequence[tuple[float, Callable[[], Event]]] = (
        (0.05, lambda: reading((95, 100), retries=rng.randint(4, 9))),
        (0.15, lambda: reading((80, 95), host=f"db-{rng.randint(1, 9)}")),
        (0.45, lambda: reading((50, 80), region=rng.choice(REGIONS))),
        (0.10, lambda: reading((20, 50), verified=False)),
        (0.14, lambda: reading((0, 20))),  # matches no rule of its type: the catch-all
        (0.10, lambda: (rng.choice(("user_signup", "page_view")), "web", {"n": 1})),
        (0.01, lambda: (generated_type(rng.randrange(GENERATED_TYPES)), "canary", {"value": 1.0})),
    )
    return _mix(count, rng, makers)


def _mix(
    count: int, rng: random.Random, makers: Sequence[tuple[float, Callable[[], Event]]]
) -> list[Event]:
    weights = [weight for weight, _ in makers]
    chosen = rng.choices([make for _, make in makers], weights=weights, k=count)
    return [make() for make in chosen]


def time_each(classify: Classify, events: Sequence[Event]) -> list[int]:
    """Nanoseconds of each call, in order (the timer's own cost included)."""
    clock = time.perf_counter_ns
    spent = []
    for event_type, source, payload in events:
        started = clock()
        classify(event_type, source, payload)
        spent.append(clock() - started)
    return spent


def _nothing(event_type: str, source: str | None, payload: dict[str, Any]) -> None:
    return None


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: the value at or under which ``fraction`` of them lie."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def measure(ruleset: rules.RuleSet, events: Sequence[Event]) -> tuple[float, float]:
    """Median and p99 µs of one classification of ``events``, the timer's cost subtracted."""
    time_each(ruleset.classify, events[:WARM_UP])
    timer = statistics.median(time_each(_nothing, events))
    spent = time_each(ruleset.classify, events)
    return (
        max(0.0, (statistics.median(spent) - timer) / 1000),
        max(0.0, (percentile(spent, 0.99) - timer) / 1000),
    )


def run(bench: Bench) -> ModeResult:
    count = bench.settings.events
    sets = {
        "shipped": (rules.default(), shipped_mix(count, random.Random(SEED))),
        "generated": (
            rules.load(generated_rule_file()),
            generated_mix(count, random.Random(SEED)),
        ),
    }
    bench.progress(
        f"rules: {count:,} classifications per set and run; generated set:"
        f" {len(sets['generated'][0].rules)} rules over {GENERATED_TYPES} event types"
    )

    def once() -> dict[str, float]:
        sample = {}
        for name, (ruleset, events) in sets.items():
            sample[f"{name}_median_us"], sample[f"{name}_p99_us"] = measure(ruleset, events)
        return sample

    samples = bench.repeat("rules", once)
    generated = len(sets["generated"][0].rules)
    return ModeResult(
        "rules",
        figures(
            samples,
            (
                ("shipped_median_us", "shipped rules, median", "µs/classification"),
                ("shipped_p99_us", "shipped rules, p99", "µs/classification"),
                (
                    "generated_median_us",
                    f"generated {generated} rules, median",
                    "µs/classification",
                ),
                ("generated_p99_us", f"generated {generated} rules, p99", "µs/classification"),
            ),
        ),
    )
