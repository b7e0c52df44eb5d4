"""The ``floor`` mode: the minimal raw-SQL worker loop, on tables of its own.

Each of W processes claims a batch with one ``UPDATE … WHERE id IN (SELECT …
FOR UPDATE SKIP LOCKED) RETURNING``, then writes one result row per job and
marks the jobs done in one statement (its own transaction), until the claim
comes back empty. No rules, no leases, no history, no NOTIFY: what is left is
the cost of the round trips and the writes on this hardware, so EventFlo's
drain rate can be stated as a fraction of it. Same events, payloads, W and B
as ``drain``, and the rate is measured the same way, from database
timestamps (first claim to last completion).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.synchronize import Barrier

import psycopg

from eventflo import signals
from eventflo.bench import (
    QUERIES,
    Bench,
    BenchError,
    Connection,
    ModeResult,
    Sample,
    figures,
    rates,
)

SUMMARY = "the minimal raw-SQL claim/complete loop on the same events, W and B"

FIGURES = (
    ("events_per_s", "events/s (DB timestamps)", "events/s"),
    ("transactions_per_s", "transactions/s (all commits)", "xact/s"),
    ("wall_s", "wall-clock incl. start-up", "s"),
)


def run(bench: Bench) -> ModeResult:
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["create_floor_tables"])
    samples = bench.repeat("floor", lambda: floor_once(bench))
    return ModeResult("floor", figures(samples, FIGURES))


def floor_once(bench: Bench) -> Sample:
    """One timed run of the floor loop over ``settings.events`` jobs."""
    settings = bench.settings
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_floor"])
        conn.execute(QUERIES["insert_floor_jobs"], {"events": settings.events})
        conn.execute(QUERIES["vacuum_floor"])
        bench.checkpoint(conn)
    commits_before = bench.commits()
    # spawn: never fork a process that holds connections (the bench's admin one).
    context = multiprocessing.get_context("spawn")
    gate = context.Barrier(settings.workers + 1)
    processes = [
        context.Process(
            target=_loop,
            args=(bench.url, settings.batch_size, gate, bench.gate_timeout, f"floor-{number}"),
            name=f"eventflo-bench-floor-{number}",
        )
        for number in range(settings.workers)
    ]
    started = time.perf_counter()
    try:
        for process in processes:
            process.start()
        try:
            gate.wait(bench.gate_timeout)  # every loop is connected: start the clock together
        except threading.BrokenBarrierError:
            raise BenchError("the floor processes did not all start in time") from None
        for process in processes:
            process.join()
        finished = time.perf_counter()
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise BenchError(f"{len(failed)} floor process(es) failed (exit status {failed[0]})")
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            if process.pid is not None:
                process.join()
    commits = bench.commits() - commits_before
    with bench.connect("verify") as conn:
        verify(conn, settings.events)
        return rates(conn, "floor_window", commits=commits, wall_seconds=finished - started)


def verify(conn: Connection, expected: int) -> None:
    """Every job done with exactly one result row (the primary key forbids a second)."""
    row = conn.execute(QUERIES["verify_floor"]).fetchone()
    assert row is not None
    if row["events"] == expected and row["exactly_once"] == expected:
        return
    raise BenchError(
        f"{expected - int(row['exactly_once']):,} of {expected:,} floor jobs were not done once"
    )


def _loop(url: str, batch_size: int, gate: Barrier, gate_timeout: float, worker: str) -> None:
    """One floor process: connect, wait for the others, claim and complete until none is left."""
    signals.ignore_terminal_interrupt()  # Ctrl-C is the bench's to handle; it terminates us
    claim, complete = QUERIES["floor_claim"], QUERIES["floor_complete"]
    with psycopg.connect(url, autocommit=True, application_name=f"eventflo-bench {worker}") as conn:
        gate.wait(gate_timeout)
        while True:
            rows = conn.execute(claim, {"worker": worker, "batch_size": batch_size}).fetchall()
            if not rows:
                return
            ids = [row[0] for row in rows]
            conn.execute(complete, {"ids": ids, "outcomes": ["done"] * len(ids)})
