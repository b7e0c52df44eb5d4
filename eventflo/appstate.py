"""What the web views of one app share, and the one typed way to reach it.

The settings, and this process's pool, long-poll watcher, long-poll slots
and active rule version (what requests are validated against). Connections, threads
and semaphores do not survive a fork, so these are made on first use in each
process: an app built before gunicorn forks (``--preload``) still gives every
worker its own.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import flask

from eventflo import db, rules, ruleversions
from eventflo.activerules import ActiveRules, VersionedRules
from eventflo.config import Config
from eventflo.listener import FinishedWatcher, RulesWatcher
from eventflo.longpoll import LongPollSlots

EXTENSION = "eventflo"


@dataclasses.dataclass(frozen=True)
class _ProcessResources:
    pid: int
    pool: db.Pool
    watcher: FinishedWatcher
    long_polls: LongPollSlots
    rules_watcher: RulesWatcher
    active_rules: ActiveRules


class AppState:
    """One app's settings, and the resources each process that serves it makes for itself."""

    def __init__(self, config: Config, rule_set: rules.RuleSet | None = None) -> None:
        self.config = config
        # A pinned rule set (tests) instead of the active version, and its stored number.
        self._pinned = rule_set
        self._pinned_version: int | None = None
        self._pinned_looked_up = False
        self._lock = threading.Lock()
        self._resources: _ProcessResources | None = None

    def _for_this_process(self) -> _ProcessResources:
        with self._lock:
            if self._resources is None or self._resources.pid != os.getpid():
                # Whatever a parent process left here is its own; never close it from the child.
                rules_watcher = RulesWatcher(self.config)
                self._resources = _ProcessResources(
                    pid=os.getpid(),
                    pool=db.create_pool(self.config),
                    watcher=FinishedWatcher(self.config),
                    long_polls=LongPollSlots(self.config.max_long_polls),
                    rules_watcher=rules_watcher,
                    active_rules=ActiveRules(rules_watcher),
                )
            return self._resources

    @property
    def pool(self) -> db.Pool:
        return self._for_this_process().pool

    @property
    def finished_listener(self) -> FinishedWatcher:
        return self._for_this_process().watcher

    @property
    def long_polls(self) -> LongPollSlots:
        return self._for_this_process().long_polls

    @property
    def active_rules(self) -> ActiveRules:
        return self._for_this_process().active_rules

    def rules(self) -> VersionedRules:
        """The rule set requests are validated against now: the active version, or a pinned set."""
        if self._pinned is None:
            resources = self._for_this_process()
            return resources.active_rules.current(resources.pool)
        if not self._pinned_looked_up:
            with db.borrow(self.pool) as conn:
                self._pinned_version = ruleversions.stored_version(conn, self._pinned)
            self._pinned_looked_up = True
        return VersionedRules(self._pinned_version, self._pinned)

    def close(self) -> None:
        """Release this process's database resources: the long-poll watcher, then the pool."""
        with self._lock:
            resources, self._resources = self._resources, None
        if resources is not None and resources.pid == os.getpid():
            resources.watcher.close()
            resources.rules_watcher.close()
            resources.pool.close()


def install(app: flask.Flask, state: AppState) -> None:
    app.extensions[EXTENSION] = state


def of(app: flask.Flask) -> AppState:
    """The state of ``app``, an app that eventflo.create_app built."""
    state = app.extensions.get(EXTENSION)
    if not isinstance(state, AppState):
        raise RuntimeError(f"{app.name} was not built by eventflo.create_app: no EventFlo state")
    return state


def current() -> AppState:
    """The state of the app handling the current request."""
    return of(flask.current_app)
