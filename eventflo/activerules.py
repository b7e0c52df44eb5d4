"""The active rule version as one API process sees it: compiled once, refreshed promptly.

Requests are validated against the active version's declared fields. The
process learns of a new version from ``eventflo_rules`` (RulesWatcher), and
re-reads the active number every ``RECHECK_SECONDS`` besides, should a
notification be lost; between those, validating a request reads nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from eventflo import db, errors, rules, ruleversions
from eventflo.listener import RulesWatcher
from eventflo.rulecache import CannotLoad, RuleCache


@dataclasses.dataclass(frozen=True)
class VersionedRules:
    """A rule set and its stored version number (None: a pinned set not stored as a version)."""

    version: int | None
    rule_set: rules.RuleSet


class ActiveRules:
    """The compiled active version of one process; safe to share between request threads."""

    RECHECK_SECONDS = 5.0

    def __init__(self, watcher: RulesWatcher) -> None:
        self._watcher = watcher
        self._cache = RuleCache()
        self._lock = threading.Lock()
        self._known: VersionedRules | None = None
        self._seen = -1
        self._recheck_at = 0.0

    def current(self, pool: db.Pool) -> VersionedRules:
        """The active version, compiled; DatabaseUnavailable when it cannot be used here."""
        generation = self._watcher.generation()
        with self._lock:
            known = self._known
            if (
                known is not None
                and generation == self._seen
                and time.monotonic() < self._recheck_at
            ):
                return known
        with db.borrow(pool) as conn:
            version = ruleversions.active_number(conn)
            rule_set = self.compiled(conn, version)
        fresh = VersionedRules(version, rule_set)
        with self._lock:
            self._known, self._seen = fresh, generation
            self._recheck_at = time.monotonic() + self.RECHECK_SECONDS
        return fresh

    def compiled(self, conn: db.Connection, version: int) -> rules.RuleSet:
        """Stored version ``version``, compiled once; DatabaseUnavailable when this code cannot."""
        try:
            return self._cache.get(conn, version)
        except CannotLoad as exc:
            raise errors.DatabaseUnavailable(
                f"{exc}; this API process cannot use it until it is upgraded"
                " or an older version is made active again"
            ) from exc
