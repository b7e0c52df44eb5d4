"""Backtests: what a draft rule set would change, judged beside the active one, storing nothing.

``rules apply --dry-run`` and ``POST /rules/simulate`` both use this module,
so the CLI and the API count changes alike. Judging is the pure engine in
this process (no worker is involved); the stored events are read newest
first in bounded batches, all from one read-only snapshot, so a backtest of
many events holds one batch in memory at a time and sees no event twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Generator, Mapping
from typing import Any

from eventflo import db, rules
from eventflo.sql import load

QUERIES = load("backtest.sql")

DEFAULT_LAST = 10_000  # events a backtest judges unless told otherwise
MAX_LAST = 1_000_000  # about two minutes of judging here; more is a job for a replay
BATCH_SIZE = 1_000  # events read per statement
EXAMPLES = 3  # example event ids kept per change


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one rule set makes of one event: a verdict, or the rule that failed on it."""

    verdict: rules.Classification | None
    error: str | None = None
    failed_rule: str | None = None

    @property
    def rule(self) -> str | None:
        return None if self.verdict is None else self.verdict.rule_id

    @property
    def severity(self) -> str | None:
        return None if self.verdict is None else self.verdict.severity.value

    def key(self) -> tuple[str | None, str | None, bool | None]:
        """What a change is: another rule, severity or escalation (texts alone do not count)."""
        escalate = None if self.verdict is None else self.verdict.should_escalate
        return self.rule, self.severity, escalate

    def as_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "rule": self.failed_rule if verdict is None else verdict.rule_id,
            "severity": self.severity,
            "escalate": None if verdict is None else verdict.should_escalate,
            "reason": None if verdict is None else verdict.reason,
            "recommendation": None if verdict is None else verdict.recommendation,
            "error": self.error,
        }


def judge(
    rule_set: rules.RuleSet, event_type: str, source: str | None, payload: Mapping[str, Any]
) -> Outcome:
    """``rule_set``'s outcome for one event; a RuleError is an outcome, as a worker records it."""
    try:
        return Outcome(rule_set.classify(event_type, source, payload))
    except rules.RuleError as exc:
        return Outcome(None, error=str(exc), failed_rule=exc.rule_id)


@dataclasses.dataclass
class _Tally:
    count: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)
    error: str = ""  # a failure's first message

    def add(self, event_id: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(event_id)


@dataclasses.dataclass
class Summary:
    """The changes counted over many events: by rule, by severity, and the draft's failures."""

    judged: int = 0
    changed: int = 0
    failing_active: int = 0
    failing_draft: int = 0
    by_rule: dict[tuple[str | None, str | None], _Tally] = dataclasses.field(default_factory=dict)
    by_severity: dict[tuple[str | None, str | None], _Tally] = dataclasses.field(
        default_factory=dict
    )
    draft_failures: dict[str | None, _Tally] = dataclasses.field(default_factory=dict)

    def add(self, event_id: str, active: Outcome, draft: Outcome) -> None:
        self.judged += 1
        self.failing_active += active.verdict is None
        if draft.verdict is None:
            self.failing_draft += 1
            failure = self.draft_failures.setdefault(draft.failed_rule, _Tally())
            failure.error = failure.error or draft.error or ""
            failure.add(event_id)
        if active.key() == draft.key():
            return
        self.changed += 1
        if active.rule != draft.rule:
            self.by_rule.setdefault((active.rule, draft.rule), _Tally()).add(event_id)
        if active.severity != draft.severity:
            self.by_severity.setdefault((active.severity, draft.severity), _Tally()).add(event_id)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON: ``from``/``to`` null stand for "the event fails"."""
        return {
            "judged": self.judged,
            "changed": self.changed,
            "failing_active": self.failing_active,
            "failing_draft": self.failing_draft,
            "rule_changes": _changes(self.by_rule),
            "severity_changes": _changes(self.by_severity),
            "draft_failures": [
                {"rule": rule, "count": t.count, "error": t.error, "examples": t.examples}
                for rule, t in sorted(
                    self.draft_failures.items(), key=lambda item: (-item[1].count, item[0] or "")
                )
            ],
        }


def _changes(tallies: Mapping[tuple[str | None, str | None], _Tally]) -> list[dict[str, Any]]:
    """Most frequent first; a tie in the order of the names, so output is stable."""
    ordered = sorted(
        tallies.items(), key=lambda item: (-item[1].count, item[0][0] or "", item[0][1] or "")
    )
    return [
        {"from": before, "to": after, "count": t.count, "examples": t.examples}
        for (before, after), t in ordered
    ]


def backtest(
    conn: db.Connection,
    active: rules.RuleSet,
    draft: rules.RuleSet,
    *,
    last: int = DEFAULT_LAST,
    batch_size: int = BATCH_SIZE,
) -> Summary:
    """Judge the ``last`` newest stored events with ``active`` and ``draft``; store nothing."""
    summary = Summary()
    # closing: a failure half-way ends the read-only transaction at once, not when collected.
    with contextlib.closing(_newest_events(conn, last, batch_size)) as stored:
        for event in stored:
            event_type, source, payload = event["event_type"], event["source"], event["payload"]
            summary.add(
                str(event["id"]),
                judge(active, event_type, source, payload),
                judge(draft, event_type, source, payload),
            )
    return summary


def _newest_events(
    conn: db.Connection, last: int, batch_size: int
) -> Generator[db.Row, None, None]:
    """Up to ``last`` events, newest first, a batch per statement, each in its own snapshot.

    Not one snapshot for the whole run: a long backtest would hold back vacuum
    on the hot table for as long as it runs. Keyset paging by id stays exact
    as events come and go; an event purged meanwhile is simply not judged.
    """
    remaining = last
    before: uuid.UUID | None = None
    while remaining > 0:
        limit = min(batch_size, remaining)
        if before is None:
            batch = conn.execute(QUERIES["newest_events"], {"limit": limit}).fetchall()
        else:
            batch = conn.execute(
                QUERIES["events_older_than"], {"before": before, "limit": limit}
            ).fetchall()
        yield from batch
        if len(batch) < limit:
            return
        remaining -= len(batch)
        before = batch[-1]["id"]
