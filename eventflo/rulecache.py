"""Compiled rule versions, per process: each stored version is read and compiled once.

Versions are immutable, so a compiled one never goes stale; only a few are
kept (a worker needs the active one, and the previous one for a moment
while an activation rolls out).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import psycopg

from eventflo import rules, ruleversions


class CannotLoad(Exception):
    """This code cannot use a stored version (a newer release wrote it: a mixed deploy)."""

    def __init__(self, version: int, reason: str) -> None:
        self.version = version
        self.reason = reason
        super().__init__(f"cannot load rule version {version}: {reason}")


class RuleCache:
    """The last few versions used, compiled; safe to share between threads."""

    SIZE = 4

    def __init__(self) -> None:
        self._compiled: collections.OrderedDict[int, rules.RuleSet] = collections.OrderedDict()
        # Versions are immutable: one this code cannot compile never will, so it is not read
        # and compiled again on every poll of a worker waiting for another activation.
        self._unusable: dict[int, str] = {}  # version -> why
        self._lock = threading.Lock()

    def get(self, conn: psycopg.Connection[dict[str, Any]], version: int) -> rules.RuleSet:
        """Version ``version`` compiled; CannotLoad when this code cannot use it."""
        with self._lock:
            found = self._compiled.get(version)
            if found is not None:
                self._compiled.move_to_end(version)
                return found
            why = self._unusable.get(version)
            if why is not None:
                raise CannotLoad(version, why)
        try:
            text = ruleversions.get(conn, version).text
        except ruleversions.UnknownVersion as exc:
            raise CannotLoad(version, str(exc)) from exc
        try:
            # Its tests passed when it was applied; they say nothing about this process.
            compiled = rules.load(text, run_tests=False)
        except rules.RuleFileError as exc:
            first = exc.problems[0] if exc.problems else "invalid"
            raise self._unusable_now(version, f"{first} ({len(exc.problems)} problems)") from exc
        except Exception as exc:  # a compiler this release does not expect to fail: same outcome
            raise self._unusable_now(version, f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            self._compiled[version] = compiled
            while len(self._compiled) > self.SIZE:
                self._compiled.popitem(last=False)
        return compiled

    def _unusable_now(self, version: int, reason: str) -> CannotLoad:
        with self._lock:
            self._unusable[version] = reason
        return CannotLoad(version, reason)
