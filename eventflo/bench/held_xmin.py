"""The ``held-xmin`` mode: steady ingest and processing while another session holds a snapshot.

A REPEATABLE READ transaction reads ``events`` once and stays open for the
whole run, as a long report or a forgotten ``BEGIN`` in psql would. Its
snapshot is the xmin horizon: no row version that died after it can be
removed, so every claim and completion leaves a dead tuple in the heap (and
dead entries in the claim index) until the end. The target: the
throughput drops by at most 25 % over a 2-minute run.

Meanwhile the real workers (``eventflo worker --processes W``, started
behind drain's gate) process events, and the bench tops the backlog up
with a batch whenever fewer than ``backlog()`` events wait, so the workers
are never idle and the rate is their capacity. Rates are on the database's
clock: events completed in the first and in the last window of the run
(``window_seconds()``), which runs from the first claim to the moment the
producer stopped. Afterwards the workers drain what is left, and every
inserted event must have been processed exactly once (``drain.verify``).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import psycopg

from eventflo.bench import (
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Sample,
    Settings,
    drain,
    figures,
)

SUMMARY = "ingest + processing for --held-seconds while a REPEATABLE READ snapshot is held open"

# The producer's look at the backlog is one probe of a primary key: cheap at this pace.
PRODUCER_POLL_SECONDS = 0.1
# The producer inserts like clients of POST /events/batch: at most this many per transaction.
INSERT_CHUNK = 1000
# Progress lines per run, so a long run shows it is alive and how the garbage grows.
PROGRESS_LINES = 6


def window_seconds(held_seconds: float) -> float:
    """The first and last windows: 10 % of the run, at least 10 s, at most half of it."""
    return min(max(10.0, 0.1 * held_seconds), held_seconds / 2)


def backlog(settings: Settings) -> int:
    """The low-water mark, and the size of each top-up.

    The producer looks every PRODUCER_POLL_SECONDS and counts the events in
    flight (W × B, claimed but not finished) as waiting, so the mark is ten
    batches per worker and at least half a second of a fast machine's drain.
    """
    return max(5000, 10 * settings.workers * settings.batch_size)


def run(bench: Bench) -> ModeResult:
    held = bench.settings.held_seconds
    window = window_seconds(held)
    samples = bench.repeat("held-xmin", lambda: held_once(bench, window))
    specs = (
        ("events_per_s_first", f"events/s, first {window:g} s", "events/s"),
        ("events_per_s_last", f"events/s, last {window:g} s", "events/s"),
        ("drop_pct", "throughput drop, first → last window", "%"),
        ("events_per_s", "events/s, whole run", "events/s"),
        ("processed", f"events processed in the {held:g} s run", "events"),
        ("dead_tuples_start", "dead tuples in events at start (n_dead_tup)", "tuples"),
        ("dead_tuples_end", "dead tuples in events at end (n_dead_tup)", "tuples"),
        ("snapshot_age", "held snapshot's age at end", "xacts"),
    )
    return ModeResult("held-xmin", figures(samples, specs))


def held_once(bench: Bench, window: float) -> Sample:
    """One run of ``settings.held_seconds`` with the snapshot held, then the drain of the rest.

    Raises BenchError if any event was not processed exactly once, or if
    the snapshot was released before the end.
    """
    settings = bench.settings
    top_up = backlog(settings)
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
        conn.execute(QUERIES["insert_queued_events"], {"events": 2 * top_up})
        conn.execute(QUERIES["vacuum_events"])
        bench.checkpoint(conn)
        attempts_before = attempts_high_water(conn)
    with (
        tempfile.TemporaryFile() as log,
        held_snapshot(bench) as holder_pid,
        bench.connect("producer") as conn,
        drain.gated_workers(bench, conn, log, processes=settings.workers) as workers,
    ):
        start = _one(conn, "dead_tuples")
        inserted = _produce(
            bench, conn, workers, log, queued=2 * top_up, top_up=top_up, base=attempts_before
        )
        end = _one(conn, "dead_tuples")
        age = conn.execute(QUERIES["snapshot_age"], {"pid": holder_pid}).fetchone()
        if age is None or age["transactions"] is None:
            raise BenchError(
                "the held snapshot was released before the end of the run"
                " (did a timeout or an administrator end its session?)"
            )
        bench.progress(f"held-xmin: producer stopped after {inserted:,} events; draining the rest")
        drain.wait_until_empty(conn, workers, log)
    with bench.connect("verify") as conn:
        drain.verify(conn, inserted)
        counts = conn.execute(
            QUERIES["held_xmin_windows"], {"ended": end["at"], "window_seconds": window}
        ).fetchone()
    assert counts is not None
    first, last = counts["first_window"] / window, counts["last_window"] / window
    if first <= 0 or not counts["seconds"] or counts["seconds"] <= 0:
        raise BenchError("the database timestamps show no event completed in the first window")
    return {
        "events_per_s_first": first,
        "events_per_s_last": last,
        "drop_pct": 100 * (1 - last / first),
        "events_per_s": counts["during_run"] / counts["seconds"],
        "processed": counts["during_run"],
        "dead_tuples_start": start["dead"],
        "dead_tuples_end": end["dead"],
        "snapshot_age": age["transactions"],
    }


@contextlib.contextmanager
def held_snapshot(bench: Bench) -> Iterator[int]:
    """A REPEATABLE READ transaction that has read ``events`` and stays open; yields its server pid.

    Its snapshot is taken by the first read and released when the
    transaction ends on the way out, errors and Ctrl-C included.
    """
    with bench.connect("held snapshot") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute(QUERIES["keep_idle_transaction"])
            conn.execute(QUERIES["take_snapshot"])
            yield conn.info.backend_pid


def _produce(
    bench: Bench,
    conn: Connection,
    workers: subprocess.Popen[bytes],
    log: IO[bytes],
    *,
    queued: int,
    top_up: int,
    base: int,
) -> int:
    """Top the backlog up until ``settings.held_seconds`` have passed; returns the events inserted.

    The backlog is estimated as inserted minus finished attempts (the
    attempts' high-water mark over ``base``), so no look scans ``events``,
    whose claim index fills up with dead entries during the run.
    """
    held = bench.settings.held_seconds
    inserted = queued
    started = time.monotonic()
    deadline = started + held
    next_progress = started + held / PROGRESS_LINES
    while (now := time.monotonic()) < deadline:
        finished = attempts_high_water(conn) - base
        if inserted - finished < top_up:
            # In requests of at most 1,000 events, as POST /events/batch takes them.
            for chunk in _chunks(top_up, INSERT_CHUNK):
                conn.execute(QUERIES["insert_queued_events"], {"events": chunk})
            inserted += top_up
        if workers.poll() is not None:
            raise BenchError(
                f"the workers exited early (status {workers.returncode}){drain.log_tail(log)}"
            )
        if now >= next_progress:
            dead = _one(conn, "dead_tuples")["dead"]
            bench.progress(
                f"held-xmin: {now - started:.0f}/{held:g} s, {finished:,} events processed,"
                f" {dead:,} dead tuples in events"
            )
            next_progress += held / PROGRESS_LINES
        time.sleep(PRODUCER_POLL_SECONDS)
    return inserted


def _chunks(total: int, size: int) -> list[int]:
    """``total`` split into chunks of at most ``size``."""
    return [min(size, total - start) for start in range(0, total, size)]


def attempts_high_water(conn: Connection) -> int:
    """Attempts finished so far, give or take those still committing: the identity's high water."""
    return int(_one(conn, "attempts_high_water")["attempts"])


def _one(conn: Connection, query: str) -> dict[str, Any]:
    row = conn.execute(QUERIES[query]).fetchone()
    assert row is not None
    return row
