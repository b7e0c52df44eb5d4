"""The worker's log: a structured line per event state change, JSON on request, no payload at INFO.

The lines go through the real formatter (EVENTFLO_LOG_FORMAT=json) into a
buffer, and every line must parse as JSON on its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from eventflo import events, logs, queue, registry, rescue
from eventflo.worker import Worker
from tests.integration.worker_harness import RulesThatRaise

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-payload-value"


@contextlib.contextmanager
def _json_log(level: int) -> Iterator[io.StringIO]:
    """The ``eventflo`` loggers at ``level``, rendered by the JSON formatter into a buffer."""
    logger = logging.getLogger("eventflo")
    saved = (logger.level, logger.handlers[:], logger.propagate)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JSONFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield buffer
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def _insert(conn, event_type, payload):
    return str(events.insert(conn, events.NewEvent(event_type, payload, source="tests")).event_id)


class _Flaky(Exception):
    pass


_RULES = RulesThatRaise(lambda payload: _Flaky(f"cannot handle {payload}"))


def test_one_json_line_per_state_change_with_ids_attempt_and_duration_and_no_payload(config, conn):
    completed = _insert(conn, "payment_failed", {"amount": 1500, "card": SECRET})
    rule_error = _insert(conn, "payment_failed", {"amount": SECRET})  # the rule quotes the value
    flaky = _insert(conn, "boom", {"secret": SECRET})
    settings = dataclasses.replace(config, max_attempts=2, retry_base_seconds=0.01)
    with (
        _json_log(logging.INFO) as buffer,
        contextlib.closing(Worker(settings, rule_set=_RULES)) as worker,
    ):
        assert worker.run_once() == 3
        conn.execute("UPDATE events SET run_at = now() WHERE id = %s", [flaky])  # skip the back-off
        assert worker.run_once() == 1
    lines = _lines(buffer)

    by_event: dict[str, list[dict]] = {}
    for line in lines:
        if "event_id" in line and line["message"].startswith("event "):
            by_event.setdefault(line["event_id"], []).append(line)
    messages = {event_id: [line["message"] for line in seen] for event_id, seen in by_event.items()}
    assert messages == {
        completed: ["event claimed", "event completed"],
        rule_error: ["event claimed", "event failed"],
        flaky: ["event claimed", "event retried", "event claimed", "event failed"],
    }
    for seen in by_event.values():
        for line in seen:
            assert line["level"] == "info"
            assert line["logger"] == "eventflo.worker"
            assert line["worker_id"] == worker.worker_id
            assert isinstance(line["attempt"], int) and line["attempt"] >= 1
            if line["message"] == "event claimed":
                assert line["status"] == "processing"
                assert line["waited_ms"] >= 0
            else:
                assert line["duration_ms"] >= 0
    done = by_event[completed][1]
    assert (done["status"], done["rule"], done["severity"], done["attempt"]) == (
        "completed",
        "payment_failed.large",
        "CRITICAL",
        1,
    )
    assert by_event[rule_error][1]["cause"] == "rule error"
    assert by_event[rule_error][1]["status"] == "failed"
    retried, last = by_event[flaky][1], by_event[flaky][3]
    assert (retried["status"], retried["cause"], retried["attempt"]) == (
        "queued",
        "unexpected error",
        1,
    )
    assert retried["retry_in_s"] >= 0
    assert (last["status"], last["attempt"]) == ("failed", 2)

    info = [line for line in lines if line["level"] == "info"]
    assert SECRET not in json.dumps(info), "payload contents at INFO level"
    # The rule's traceback is a WARNING of its own, for whoever fixes the rule.
    assert any(
        line["level"] == "warning" and "exception" in line and line["event_id"] == flaky
        for line in lines
    )


def test_a_rescued_lease_is_logged_with_its_reason(config, conn):
    registry.register(conn, worker_id="gone-worker", host="h", pid=1)
    event_id = _insert(conn, "user_signup", {})
    queue.claim(conn, worker_id="gone-worker", batch_size=10, lease_seconds=300)
    registry.stop(conn, worker_id="gone-worker", completed=0, failed=0)
    with _json_log(logging.INFO) as buffer:
        rescue.Rescuer(config, worker_id="rescuer").run(conn)
    (line,) = [line for line in _lines(buffer) if line["message"] == "event lease rescued"]
    assert line["level"] == "warning"
    assert (line["event_id"], line["worker_id"], line["attempt"], line["status"]) == (
        event_id,
        "rescuer",
        1,
        "queued",
    )
    assert line["holder_worker_id"] == "gone-worker"
    assert line["reason"] == "lease released: worker gone-worker stopped"
    assert line["duration_ms"] >= 0


def test_at_warning_level_the_worker_writes_no_per_event_line(config, conn):
    for _ in range(3):
        _insert(conn, "user_signup", {})
    with _json_log(logging.WARNING) as buffer, contextlib.closing(Worker(config)) as worker:
        assert worker.run_once() == 3
    assert buffer.getvalue() == ""


def test_a_worker_process_logs_json_lines_when_asked(database_url, conn, tmp_path):
    """The real set-up path: ``python worker.py`` with ``EVENTFLO_LOG_FORMAT=json``."""
    event_id = _insert(conn, "sla_breach", {"minutes_over": 45, "note": SECRET})
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    env.update(
        EVENTFLO_DATABASE_URL=database_url, EVENTFLO_LOG_FORMAT="json", EVENTFLO_LOG_LEVEL="info"
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while '"event completed"' not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    states = [(line["message"], line.get("event_id")) for line in lines]
    assert ("event claimed", event_id) in states and ("event completed", event_id) in states, text
    assert [line["message"] for line in lines if "event_id" not in line] == [
        "worker started",
        "worker registered",
        "received SIGTERM: finishing the batch in hand, then exiting",
        "worker stopped",
    ]
    assert SECRET not in text
