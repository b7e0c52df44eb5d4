"""The worker loop on a real PostgreSQL: batches, verdicts, NOTIFY wake-ups, reconnects, retries."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import sys
import time

from eventflo import events
from eventflo.rules import Severity
from eventflo.worker import Worker, new_worker_id
from tests.integration.worker_harness import (
    RulesThatRaise,
    poll_until,
    rules_that_fail_on_boom,
    running,
)

# Long enough that polling cannot explain anything a test sees within WAKE_DEADLINE.
LONG_POLL = 30.0
WAKE_DEADLINE = 5.0

SAMPLES = [
    # event_type, payload, severity, escalate
    ("payment_failed", {"amount": 1500}, Severity.CRITICAL, True),
    ("sla_breach", {"minutes_over": 10}, Severity.WARNING, False),
    ("system_error", {"component": "db"}, Severity.CRITICAL, True),
    ("user_signup", {"plan": "free"}, Severity.LOW, False),
]


def _insert(conn, event_type="user_signup", payload=None):
    return events.insert(conn, events.NewEvent(event_type, payload or {}, source="tests")).event_id


def _status(conn, event_id):
    return conn.execute("SELECT status FROM events WHERE id = %s", [event_id]).fetchone()["status"]


@contextlib.contextmanager
def _closing(worker):
    try:
        yield worker
    finally:
        worker.close()


def test_run_once_drains_a_batch_with_the_rule_tables_verdicts(config, conn):
    ids = [_insert(conn, event_type, payload) for event_type, payload, _, _ in SAMPLES]
    with _closing(Worker(config)) as worker:
        assert worker.run_once() == len(SAMPLES)
        assert worker.run_once() == 0

    for event_id, (event_type, _, severity, escalate) in zip(ids, SAMPLES, strict=True):
        shown = events.get(conn, event_id)
        assert shown["status"] == "completed", event_type
        assert shown["attempts"] == 1
        assert (shown["result"]["severity"], shown["result"]["should_escalate"]) == (
            severity,
            escalate,
        ), event_type
        assert [(h["outcome"], h["worker_id"]) for h in shown["history"]] == [
            ("completed", worker.worker_id)
        ]


def test_run_once_claims_no_more_than_the_batch_size(config, conn):
    for _ in range(5):
        _insert(conn)
    with _closing(Worker(dataclasses.replace(config, batch_size=3))) as worker:
        assert [worker.run_once() for _ in range(3)] == [3, 2, 0]
    counts = conn.execute("SELECT status, count(*) AS n FROM events GROUP BY status").fetchall()
    assert [(r["status"], r["n"]) for r in counts] == [("completed", 5)]


def test_an_idle_worker_wakes_up_on_notify_and_stops_promptly(config, conn):
    worker = Worker(dataclasses.replace(config, poll_interval=LONG_POLL))
    with running(worker, until_listening=True) as thread:
        first = _insert(conn, "system_error")
        assert poll_until(lambda: _status(conn, first) == "completed", WAKE_DEADLINE)
        # Now certainly idle, blocked on LISTEN for up to LONG_POLL seconds.
        second = _insert(conn, "sla_breach", {"minutes_over": 45})
        woke = poll_until(lambda: _status(conn, second) == "completed", WAKE_DEADLINE)
        assert woke, "the worker did not wake up on NOTIFY"

        stop_requested = time.monotonic()
        worker.stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
        assert time.monotonic() - stop_requested < 2.0
    assert worker.processed == 2
    gone = poll_until(
        lambda: (
            conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE %s",
                [f"%{worker.worker_id}"],
            ).fetchone()["n"]
            == 0
        ),
        5,
    )
    assert gone, "the stopped worker left connections open"


def test_the_listener_reconnects_after_its_connection_is_killed(config, conn):
    worker = Worker(dataclasses.replace(config, poll_interval=LONG_POLL))
    with running(worker, until_listening=True):
        first = _insert(conn)
        assert poll_until(lambda: _status(conn, first) == "completed", WAKE_DEADLINE)
        old_pid = worker.listener.backend_pid()
        killed = conn.execute("SELECT pg_terminate_backend(%s) AS ok", [old_pid]).fetchone()
        assert killed["ok"] is True

        second = _insert(conn)
        woke = poll_until(lambda: _status(conn, second) == "completed", WAKE_DEADLINE)
        assert woke, "after losing LISTEN the worker neither reconnected nor polled"
        assert poll_until(
            lambda: worker.listener.backend_pid() not in (None, old_pid), WAKE_DEADLINE
        )

        # And the new LISTEN connection delivers wake-ups again.
        third = _insert(conn)
        assert poll_until(lambda: _status(conn, third) == "completed", WAKE_DEADLINE)
    assert worker.processed == 3


def _main_session_pid(conn, worker):
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        [f"eventflo-worker {worker.worker_id}"],
    ).fetchone()
    return row and row["pid"]


def test_a_failing_statement_is_backed_off_on_the_same_connection(config, conn, caplog):
    """Not a lost connection: the worker logs it, waits, retries, and never reconnects for it."""
    worker = Worker(dataclasses.replace(config, heartbeat_seconds=0.2, poll_interval=LONG_POLL))
    with running(worker, until_listening=True):
        first = _insert(conn)
        assert poll_until(lambda: _status(conn, first) == "completed", WAKE_DEADLINE)
        session = _main_session_pid(conn, worker)
        assert session

        # A schema the worker does not expect: every heartbeat fails, and the loop with it.
        conn.execute("ALTER TABLE workers RENAME COLUMN completed TO completed_elsewhere")
        try:
            assert poll_until(
                lambda: any(r.getMessage().startswith("database error") for r in caplog.records),
                WAKE_DEADLINE,
            ), "the failing heartbeat was not logged"
            waiting = _insert(conn)
        finally:
            conn.execute("ALTER TABLE workers RENAME COLUMN completed_elsewhere TO completed")

        assert poll_until(lambda: _status(conn, waiting) == "completed", 15), "never recovered"
        assert _main_session_pid(conn, worker) == session, "it reconnected for a failed statement"
    messages = [r.getMessage() for r in caplog.records]
    assert not any("database unavailable" in m for m in messages), messages
    failure = next(r for r in caplog.records if r.getMessage().startswith("database error"))
    assert "UndefinedColumn" in failure.getMessage() and failure.exc_info


def test_a_running_worker_rescues_the_expired_claims_of_a_dead_one(config, conn):
    event_id = _insert(conn, "payment_failed", {"amount": 5})
    conn.execute(
        "UPDATE events SET status = 'processing', attempts = 1, locked_by = 'dead-worker',"
        " locked_until = now() - interval '1 second', started_at = now() - interval '1 minute'"
        " WHERE id = %s",
        [event_id],
    )
    worker = Worker(dataclasses.replace(config, poll_interval=LONG_POLL))
    with running(worker, until_listening=True):
        assert poll_until(lambda: _status(conn, event_id) == "completed", WAKE_DEADLINE)
    shown = events.get(conn, event_id)
    assert shown["attempts"] == 2
    assert shown["result"]["severity"] == Severity.HIGH
    assert [(h["worker_id"], h["outcome"]) for h in shown["history"]] == [
        ("dead-worker", "lease_expired"),
        (worker.worker_id, "completed"),
    ]


class _Flaky(Exception):
    pass


def test_an_unexpected_rule_exception_retries_with_back_off_then_fails(config, conn):
    settings = dataclasses.replace(
        config, max_attempts=3, retry_base_seconds=10.0, retry_max_seconds=60.0
    )
    event_id = _insert(conn, "boom")
    bystander = _insert(conn, "user_signup")
    with _closing(
        Worker(settings, rule_set=RulesThatRaise(lambda _: _Flaky("upstream hiccup")))
    ) as worker:
        for attempt in (1, 2):
            assert worker.run_once() >= 1
            row = conn.execute("SELECT * FROM events WHERE id = %s", [event_id]).fetchone()
            assert (row["status"], row["attempts"]) == ("queued", attempt)
            assert row["run_at"] > row["updated_at"], "a retry must wait out a back-off"
            assert "_Flaky: upstream hiccup" in row["error_message"]
            assert worker.run_once() == 0, "claimed during its back-off"
            conn.execute(
                "UPDATE events SET run_at = now() WHERE id = %s", [event_id]
            )  # skip the wait
        assert worker.run_once() == 1

    shown = events.get(conn, event_id)
    assert (shown["status"], shown["attempts"], shown["result"]) == ("failed", 3, None)
    assert "upstream hiccup" in shown["error_message"]
    assert [h["outcome"] for h in shown["history"]] == ["retried", "retried", "failed"]
    assert _status(conn, bystander) == "completed", "one bad event must not hold up its batch"


def test_a_rule_error_fails_the_event_at_once(config, conn):
    event_id = _insert(conn, "boom", {"n": "seven"})
    with _closing(Worker(config, rule_set=rules_that_fail_on_boom())) as worker:
        assert worker.run_once() == 1
        assert worker.run_once() == 0
    shown = events.get(conn, event_id)
    assert (shown["status"], shown["attempts"]) == ("failed", 1)
    assert (
        shown["error_message"] == "rule error: rule boom.explodes: payload.n: Must be an integer."
    )
    assert [h["outcome"] for h in shown["history"]] == ["failed"]


def test_an_ill_typed_payload_fails_at_once_with_the_default_rules(config, conn):
    # The API rejects this payload; a row written by other means still must not loop.
    event_id = _insert(conn, "payment_failed", {"amount": "lots"})
    with _closing(Worker(config)) as worker:
        assert worker.run_once() == 1
    shown = events.get(conn, event_id)
    assert (shown["status"], shown["attempts"]) == ("failed", 1)
    assert "payload.amount" in shown["error_message"]


def test_worker_ids_are_unique_per_worker_and_per_process(config):
    pattern = re.compile(rf"^{re.escape(socket.gethostname())}:{os.getpid()}:[0-9a-f]{{6}}$")
    ids = {Worker(config).worker_id for _ in range(20)} | {new_worker_id() for _ in range(20)}
    assert len(ids) == 40
    assert all(pattern.match(worker_id) for worker_id in ids), ids

    other = subprocess.run(
        [sys.executable, "-c", "from eventflo.worker import new_worker_id; print(new_worker_id())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    host, pid, suffix = other.split(":")
    assert host == socket.gethostname()
    assert int(pid) != os.getpid()
    assert re.fullmatch(r"[0-9a-f]{6}", suffix)


def test_two_workers_share_the_queue_without_double_processing(config, conn):
    for _ in range(60):
        _insert(conn)
    settings = dataclasses.replace(config, batch_size=5, poll_interval=LONG_POLL)
    workers = [Worker(settings) for _ in range(2)]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.enter_context(running(worker, until_listening=True))
        done = poll_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) AS n FROM events WHERE status = 'completed'"
                ).fetchone()["n"]
                == 60
            ),
            15,
        )
        assert done
    assert conn.execute("SELECT count(*) AS n FROM event_processing_results").fetchone()["n"] == 60
    assert conn.execute("SELECT max(attempts) AS n FROM events").fetchone()["n"] == 1
    assert sum(w.processed for w in workers) == 60
