"""A Worker driven in-process by a test: in a thread of its own, with a rule table of the test's."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from eventflo import rules
from eventflo.rules import Severity
from eventflo.worker import Worker

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` s pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


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
