"""The vocabulary shared by the rule file, the engine and its callers: verdicts and errors."""

from __future__ import annotations

import dataclasses
import enum


class Severity(enum.StrEnum):
    """Mirrors the ``severity`` enum of the database."""

    LOW = "LOW"
    WARNING = "WARNING"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class RuleError(ValueError):
    """An event cannot be judged: a rule failed on its payload (a field of the wrong type).

    A worker fails such an event at once: retrying cannot change the payload.
    ``rule_id`` names the rule that failed (None when no rule matched), so a
    backtest can count failures by rule without parsing the message.
    """

    def __init__(self, message: str, *, rule_id: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id


@dataclasses.dataclass(frozen=True)
class Classification:
    """The verdict on one event."""

    severity: Severity
    reason: str
    recommendation: str
    should_escalate: bool
    rule_id: str


@dataclasses.dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a rule file, at the line an operator has to look at."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class RuleFileError(ValueError):
    """A rule file that cannot be used, with every problem found in it (not just the first)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))
