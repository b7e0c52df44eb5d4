"""Runs the rules on a claimed batch, outside any transaction: a verdict or a failure per event.

A rule error (a rule failed on the payload; it names the rule) fails the
event for good: the rules are deterministic, so retrying cannot change the
outcome. Any other exception is a bug in the engine, retried with back-off,
since the next attempt may differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventflo import batch_log, queue, rules


def classify(
    batch: Sequence[queue.Claimed], rule_set: rules.RuleSet, *, worker_id: str
) -> tuple[list[queue.Verdict], list[queue.Failure]]:
    """Judge every event of ``batch``; never raises for one event's sake."""
    verdicts: list[queue.Verdict] = []
    failures: list[queue.Failure] = []
    for event in batch:
        try:
            verdict = rule_set.classify(event.event_type, event.source, event.payload)
        except rules.RuleError as exc:
            failures.append(queue.Failure(event, f"rule error: {exc}", permanent=True))
        except Exception as exc:
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            failures.append(queue.Failure(event, error, permanent=False))
            # The traceback is for whoever fixes the rule; the outcome is logged once written.
            batch_log.log.warning(
                "a rule raised an unexpected error",
                extra=batch_log.event_fields(worker_id, event, error=error),
                exc_info=True,
            )
        else:
            verdicts.append(queue.Verdict(event, verdict))
    return verdicts, failures
