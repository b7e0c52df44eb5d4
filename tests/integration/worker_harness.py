"""A Worker driven in-process by a test: in a thread of its own, with a rule table of the test's."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg

from eventflo import rules
from eventflo.rules import Severity
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

            def waiting() -> bool:
                row = observer.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                    [conn.info.backend_pid],
                ).fetchone()
                return bool(row and row[0])

            assert poll_until(waiting, timeout=10), "the outcome never reached the results"
            yield future
        finally:
            blocker.execute("ROLLBACK")


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


def table_with_a_rule_that_runs(condition: Callable[[Any], bool]) -> tuple[rules.Rule, ...]:
    """The default rules behind one for event type ``boom`` whose condition is ``condition``."""
    return (
        rules.Rule(
            rule_id="explodes",
            event_type="boom",
            condition=condition,
            severity=Severity.HIGH,
            should_escalate=False,
            reason="never reached",
            recommendation="never reached",
        ),
        *rules.DEFAULT_RULES,
    )
