"""The rules engine: rule sets written as data (YAML with CEL conditions), first match wins.

``load(text)`` validates and compiles a rule file into an immutable RuleSet;
``default()`` is the shipped set, compiled once per process. Everything here is
pure: no Flask, no database, no clock, no randomness.
"""

from __future__ import annotations

import functools
from importlib import resources

from eventflo.rules.model import Classification, Problem, RuleError, RuleFileError, Severity
from eventflo.rules.reader import load
from eventflo.rules.ruleset import Rule, RuleSet, Step

__all__ = [
    "Classification",
    "Problem",
    "Rule",
    "RuleError",
    "RuleFileError",
    "RuleSet",
    "Severity",
    "Step",
    "default",
    "default_text",
    "load",
]


def default_text() -> str:
    """The shipped rule file's text, as it is in the package."""
    return resources.files(__package__).joinpath("default.yaml").read_text(encoding="utf-8")


@functools.cache
def default() -> RuleSet:
    """The shipped rule set, compiled once per process."""
    return load(default_text())
