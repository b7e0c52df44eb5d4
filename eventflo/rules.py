"""The rules engine: an ordered table of rules, first match wins, and the verdict names its rule.

Pure on purpose: no Flask, no database, no clock, no randomness, so the same
event always gets the same classification and the engine costs microseconds.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from typing import Any


class Severity(enum.StrEnum):
    """Mirrors the ``severity`` enum of the database."""

    LOW = "LOW"
    WARNING = "WARNING"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class RuleError(ValueError):
    """The payload cannot be judged by the rules (a known field has the wrong type).

    A worker fails such an event at once: retrying cannot change the payload.
    """


@dataclasses.dataclass(frozen=True)
class Classification:
    """The verdict on one event."""

    severity: Severity
    reason: str
    recommendation: str
    should_escalate: bool
    rule_id: str


Payload = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    """One row of the rule table. ``event_type=None`` matches every type."""

    rule_id: str
    event_type: str | None
    condition: Callable[[Payload], bool]
    severity: Severity
    should_escalate: bool
    reason: str
    recommendation: str

    # The verdict this rule gives: the same for every event it matches, so it
    # is made once per rule rather than once per event.
    classification: Classification = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        verdict = Classification(
            severity=self.severity,
            reason=self.reason,
            recommendation=self.recommendation,
            should_escalate=self.should_escalate,
            rule_id=self.rule_id,
        )
        object.__setattr__(self, "classification", verdict)  # frozen: the documented way


# Payload fields the rules read, with the meaning the API validates against.
# A missing field counts as 0; a present one must be a finite JSON number.
NUMERIC_FIELDS: Mapping[str, tuple[str, ...]] = {
    "payment_failed": ("amount",),
    "sla_breach": ("minutes_over",),
}


def _number(payload: Payload, field: str) -> float:
    value = payload.get(field, 0)
    # bool is an int subclass; ints are always finite (math.isfinite overflows on huge ones).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"payload.{field} must be a finite number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleError(f"payload.{field} must be a finite number, got {value!r}")
    return value


def _always(payload: Payload) -> bool:
    return True


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(
        rule_id="payment_failed.large",
        event_type="payment_failed",
        condition=lambda p: _number(p, "amount") >= 1000,
        severity=Severity.CRITICAL,
        should_escalate=True,
        reason="Payment of 1000 or more failed",
        recommendation="Page the on-call payments engineer and contact the customer",
    ),
    Rule(
        rule_id="payment_failed.small",
        event_type="payment_failed",
        condition=_always,
        severity=Severity.HIGH,
        should_escalate=False,
        reason="Payment under 1000 failed",
        recommendation="Retry the charge and notify the customer",
    ),
    Rule(
        rule_id="sla_breach.major",
        event_type="sla_breach",
        condition=lambda p: _number(p, "minutes_over") >= 30,
        severity=Severity.HIGH,
        should_escalate=True,
        reason="SLA breached by 30 minutes or more",
        recommendation="Escalate to the service owner and inform the account manager",
    ),
    Rule(
        rule_id="sla_breach.minor",
        event_type="sla_breach",
        condition=_always,
        severity=Severity.WARNING,
        should_escalate=False,
        reason="SLA breached by less than 30 minutes",
        recommendation="Review the ticket queue within the business day",
    ),
    Rule(
        rule_id="system_error",
        event_type="system_error",
        condition=_always,
        severity=Severity.CRITICAL,
        should_escalate=True,
        reason="A system error was reported",
        recommendation="Page the on-call engineer and check the service's error logs",
    ),
    Rule(
        rule_id="default",
        event_type=None,
        condition=_always,
        severity=Severity.LOW,
        should_escalate=False,
        reason="No specific rule for this event type",
        recommendation="No action needed; keep for the record",
    ),
)


def payload_errors(event_type: str, payload: Payload) -> dict[str, str]:
    """Field errors for payload fields the rules read, keyed by field name; empty when judgeable."""
    errors = {}
    for field in NUMERIC_FIELDS.get(event_type, ()):
        try:
            _number(payload, field)
        except RuleError:
            errors[field] = "Must be a finite number."
    return errors


def classify_event(
    event_type: str, payload: Payload, rules: tuple[Rule, ...] = DEFAULT_RULES
) -> Classification:
    """Judge one event with the first rule that matches; RuleError if a read field is ill-typed."""
    for rule in rules:
        if rule.event_type not in (None, event_type):
            continue
        if rule.condition(payload):
            return rule.classification
    # The table ends with a catch-all rule; reaching here means it was removed.
    raise RuleError(f"no rule matches event type {event_type!r}")
