"""The ``drain`` mode: the real worker processes empty a backlog of N queued events.

The workers are ``eventflo worker --processes W`` as a user runs them, in a
child process of their own. They start behind a gate (a table lock that
their first statement waits on), so every one is up when the clock starts;
the rate comes from the database's own timestamps, first claim to last
completion, so process start-up is not in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import IO

from eventflo.bench import (
    POLL_SECONDS,
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Sample,
    figures,
    rates,
)

SUMMARY = "the real worker processes drain a backlog of N queued events"

FIGURES = (
    ("events_per_s", "events/s (DB timestamps)", "events/s"),
    ("transactions_per_s", "transactions/s (all commits)", "xact/s"),
    ("wall_s", "wall-clock incl. start-up", "s"),
)

# Graceful stop: the workers finish the batch in hand, which takes milliseconds.
STOP_TIMEOUT = 30.0


def run(bench: Bench) -> ModeResult:
    samples = bench.repeat("drain", lambda: drain_once(bench, clear="truncate_events"))
    return ModeResult("drain", figures(samples, FIGURES))


def drain_once(
    bench: Bench, *, clear: str, fill: Callable[[Connection], int] | None = None
) -> Sample:
    """One timed drain; ``clear`` names the block resetting the table.

    ``fill`` queues the backlog and returns how many events it queued; by
    default ``settings.events`` events of the shipped rules' types.
    Raises BenchError if any event was not processed exactly once.
    """
    with bench.connect("setup") as conn:
        conn.execute(QUERIES[clear])
        events = (fill or _queue_shipped_mix(bench.settings.events))(conn)
        conn.execute(QUERIES["vacuum_events"])
        bench.checkpoint(conn)
    commits_before = bench.commits()
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        observer_commits, drained = _run_workers(bench, log)
    commits = bench.commits() - commits_before - observer_commits
    with bench.connect("verify") as conn:
        verify(conn, events)
        return rates(conn, "drain_window", commits=commits, wall_seconds=drained - started)


def _queue_shipped_mix(events: int) -> Callable[[Connection], int]:
    def fill(conn: Connection) -> int:
        conn.execute(QUERIES["insert_queued_events"], {"events": events})
        return events

    return fill


def verify(conn: Connection, expected: int) -> None:
    """Every drained event completed in one attempt with one result row and one attempt row."""
    row = conn.execute(QUERIES["verify_drain"]).fetchone()
    assert row is not None
    if row["events"] == expected and row["exactly_once"] == expected:
        return
    raise BenchError(
        f"{row['events'] - row['exactly_once']:,} of {row['events']:,} events"
        f" (expected {expected:,}) were not processed exactly once:"
        f" {row['not_completed']:,} not completed, {row['retried']:,} with attempts other than 1,"
        f" {row['without_result']:,} without a result row"
    )


def _run_workers(bench: Bench, log: IO[bytes]) -> tuple[int, float]:
    """Start the workers behind the gate, open it, wait for an empty queue, stop them.

    Returns the transactions this observer committed (to subtract from the
    database's count) and the ``perf_counter`` time the queue was seen empty.
    """
    with (
        bench.connect("observer") as conn,
        gated_workers(bench, conn, log, processes=bench.settings.workers) as workers,
    ):
        looks = wait_until_empty(conn, workers, log)
        drained = time.perf_counter()
    return 1 + looks, drained  # the gate's transaction, then one per look at the queue


@contextlib.contextmanager
def gated_workers(
    bench: Bench, conn: Connection, log: IO[bytes], *, processes: int
) -> Iterator[subprocess.Popen[bytes]]:
    """``eventflo worker --processes N`` started behind the gate that ``conn`` holds, then let go.

    Yields once every process waits at the gate and the gate is open. On the
    way out they stop gracefully (killed on errors if need be); a non-zero
    exit status after a clean run is a BenchError.
    """
    command = [sys.executable, "-m", "eventflo", "worker", "--processes", str(processes)]
    env = dict(
        os.environ,
        EVENTFLO_DATABASE_URL=bench.url,
        EVENTFLO_BATCH_SIZE=str(bench.settings.batch_size),
        EVENTFLO_LOG_LEVEL="warning",
    )
    workers: subprocess.Popen[bytes] | None = None
    try:
        with conn.transaction():
            conn.execute(QUERIES["lock_events"])
            # A session of its own: Ctrl-C reaches the bench, which stops them with SIGTERM.
            workers = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            _wait_at_gate(bench, conn, workers, log, processes)
        yield workers
    except BaseException:
        if workers is not None:
            _stop(workers)
        raise
    status = _stop(workers)
    if status != 0:
        raise BenchError(f"the workers exited with status {status} on SIGTERM{log_tail(log)}")


def wait_until_empty(conn: Connection, workers: subprocess.Popen[bytes], log: IO[bytes]) -> int:
    """Poll until no event is queued or processing; returns the looks (one transaction each)."""
    looks = 0
    while True:
        row = conn.execute(QUERIES["queue_busy"]).fetchone()
        looks += 1
        if row is None or not row["busy"]:
            return looks
        if workers.poll() is not None:
            raise BenchError(
                f"the workers exited early (status {workers.returncode}){log_tail(log)}"
            )
        time.sleep(POLL_SECONDS)


def _wait_at_gate(
    bench: Bench,
    conn: Connection,
    workers: subprocess.Popen[bytes],
    log: IO[bytes],
    expected: int,
) -> None:
    """Hold the gate until every worker process waits at it (or the gate timeout passes)."""
    deadline = time.monotonic() + bench.gate_timeout
    while True:
        row = conn.execute(QUERIES["waiting_at_gate"], {"table": "events"}).fetchone()
        waiting = row["waiting"] if row else 0
        if waiting >= expected:
            return
        if workers.poll() is not None:
            raise BenchError(
                f"the workers exited at start-up (status {workers.returncode}){log_tail(log)}"
            )
        if time.monotonic() > deadline:
            bench.progress(
                f"drain: only {waiting} of {expected} workers were up after"
                f" {bench.gate_timeout:g} s; starting anyway"
            )
            return
        time.sleep(POLL_SECONDS)


def _stop(workers: subprocess.Popen[bytes]) -> int:
    """SIGTERM (finish the batch in hand, exit 0); kill if that takes longer than STOP_TIMEOUT."""
    if workers.poll() is None:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            workers.kill()
            workers.wait()
    return workers.returncode


def log_tail(log: IO[bytes], limit: int = 2000) -> str:
    """The end of the workers' output, to show with an error."""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    return f"; their last output:\n{text[-limit:]}" if text else ""
