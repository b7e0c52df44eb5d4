"""A Worker driven in-process by a test: in a thread of its own, with a rule table of the test's."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg.rows import tuple_row

from eventflo import rules
from eventflo.config import Config
from eventflo.worker import Worker

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


@contextlib.contextmanager
def outcome_in_flight(
    database_url: str, conn: psycopg.Connection[Any], finish: Callable[[], T]
) -> Iterator[concurrent.futures.Future[T]]:
    """A slow worker's outcome, held between its completion statement and its results.

    ``finish`` (writing an outcome on ``conn``) runs in a thread; the block
    starts once its completion has run (the events' rows are locked) and its
    results wait on a lock of ``event_processing_results`` the test holds.
    The lock goes when the block ends, and the outcome commits; the future
    gives what ``finish`` returned.
    """
    with (
        psycopg.connect(database_url, autocommit=True) as blocker,
        psycopg.connect(database_url, autocommit=True) as observer,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE event_processing_results IN EXCLUSIVE MODE")
        future = pool.submit(finish)
        try:
            assert poll_until(
                lambda: waits_for_a_lock(observer, conn.info.backend_pid), timeout=10
            ), "the outcome never reached the results"
            yield future
        finally:
            blocker.execute("ROLLBACK")


def waits_for_a_lock(observer: psycopg.Connection[Any], pid: int) -> bool:
    """Whether the session ``pid`` waits for a lock, as ``observer`` (autocommit) sees it.

    From a session of its own: inside a transaction pg_stat_activity holds still.
    """
    with observer.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def closing_worker(config: Config) -> Iterator[Worker]:
    """A worker to drive with ``run_once()``; its connections closed after the block."""
    worker = Worker(config)
    try:
        yield worker
    finally:
        worker.close()


@contextlib.contextmanager
def running(worker: Worker, *, until_listening: bool = False) -> Iterator[threading.Thread]:
    """Run ``worker.run()`` in a thread until the block ends; always stop and join it.

    With ``until_listening``, the block starts once its LISTEN connection is up.
    """
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        if until_listening:
            assert poll_until(lambda: worker.listener.backend_pid() is not None, 5), (
                "worker never listened"
            )
        yield thread
    finally:
        worker.stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the worker did not stop"


# The shipped rules behind one for event type ``boom`` that reads an integer
# field: an event stored with ``n`` of another type (written before the field
# was declared, or not through the API) makes it fail at evaluation.
_BOOM_RULE = """\
  - id: boom.explodes
    event_type: boom
    when: payload.n > 5
    severity: HIGH
    reason: "never reached"
    recommendation: "never reached"
"""


def rules_that_fail_on_boom() -> rules.RuleSet:
    """The shipped rule set plus rule ``boom.explodes``, which fails on ``{"n": "seven"}``."""
    text = rules.default_text()
    text = text.replace("fields:\n", "fields:\n  boom:\n    n: {type: integer}\n", 1)
    text = text.replace("rules:", "rules:\n" + _BOOM_RULE, 1)
    return rules.load(text)


class RulesThatRaise:
    """The shipped rules, except that judging a ``boom`` event raises ``error(payload)``.

    Stands for a bug in the engine (not a rule error): the worker must retry it.
    """

    def __init__(self, error: Callable[[Any], Exception]) -> None:
        self._rules = rules.default()
        self._error = error

    @property
    def text(self) -> str:
        return self._rules.text

    def canonical(self) -> str:
        """The shipped set's: its results record version 1, the version it stands for."""
        return self._rules.canonical()

    def classify(self, event_type: str, source: str | None, payload: Any) -> rules.Classification:
        if event_type == "boom":
            raise self._error(payload)
        return self._rules.classify(event_type, source, payload)
