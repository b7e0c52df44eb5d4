"""The supervisor of ``eventflo worker --processes N``: runs N worker processes and outlives them.

It restarts a worker process that dies and, knowing it died, gives its
leases back at once: the dead worker is recorded as reaped in the registry,
and its claims are released with the rescue's own fenced statement, instead
of waiting for the registry's silence timeout or the lease to run out. On
SIGTERM/SIGINT it forwards SIGTERM to every worker and waits for each to
finish its batch.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import secrets
import signal
import threading
import time
from multiprocessing.process import BaseProcess

import psycopg

from eventflo import db, logs, queue, registry, rescue, signals
from eventflo.config import Config
from eventflo.worker import STOP_MESSAGE, Worker, new_worker_id

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0  # do not spin if a worker dies at start-up


@dataclasses.dataclass(frozen=True)
class Child:
    """A worker process and the worker id it runs under."""

    process: BaseProcess
    worker_id: str


def run(config: Config, processes: int, *, shutdown_grace: float = 60.0) -> int:
    """Run ``processes`` workers, restart any that dies, stop them all on SIGTERM/SIGINT.

    Returns the exit status: 0 after a graceful stop.
    """
    logs.configure(config)
    config.require_database_url()
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold connections
    stop = threading.Event()
    signals.install_graceful_stop(stop, message="stopping the worker processes")

    children = [start_child(ctx, config) for _ in range(processes)]
    while not stop.is_set():
        multiprocessing.connection.wait([c.process.sentinel for c in children], timeout=0.5)
        for index, child in enumerate(children):
            if child.process.exitcode is not None and not stop.is_set():
                log.error(
                    "worker process exited unexpectedly; restarting it",
                    extra={
                        "pid": child.process.pid,
                        "exitcode": child.process.exitcode,
                        "worker_id": child.worker_id,
                    },
                )
                release_dead_worker(config, child)
                stop.wait(RESTART_DELAY_SECONDS)
                if not stop.is_set():
                    children[index] = start_child(ctx, config)

    _stop_all(config, children, shutdown_grace)
    log.info("all worker processes stopped")
    return 0


def start_child(ctx: multiprocessing.context.SpawnContext, config: Config) -> Child:
    """Start a worker process; its id is known here, to release its leases if it dies."""
    suffix = secrets.token_hex(3)
    process = ctx.Process(
        target=child_main, args=(config, os.getpid(), suffix), name="eventflo-worker"
    )
    process.start()
    assert process.pid is not None  # set by start()
    child = Child(process, new_worker_id(pid=process.pid, suffix=suffix))
    log.info("started worker process", extra={"pid": process.pid, "worker_id": child.worker_id})
    return child


def child_main(config: Config, parent_pid: int, id_suffix: str) -> None:
    """Entry point of a supervised worker process (its id: this host, its pid, ``id_suffix``).

    Ctrl-C in a terminal signals the whole process group; the supervisor
    forwards SIGTERM, so children ignore SIGINT to avoid counting it twice.
    """
    signals.ignore_terminal_interrupt()
    logs.configure(config)
    stop = threading.Event()
    signals.install_graceful_stop(stop, (signal.SIGTERM,), message=STOP_MESSAGE)
    worker_id = new_worker_id(suffix=id_suffix)
    Worker(config, stop=stop, worker_id=worker_id, parent_pid=parent_pid).run()


def exit_reason(exitcode: int) -> str:
    """How a process ended, for people: "killed by SIGKILL", "exited with status 1"."""
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def release_dead_worker(config: Config, child: Child) -> None:
    """Record a dead child as reaped and give its leases back to the queue now.

    The release is the rescue's statement limited to this worker: fenced in
    the same UPDATE, so an event whose outcome committed just before the
    death is never overwritten, and each released lease is counted as an
    attempt as the rescue counts it. A lease still locked by the dead
    worker's unfinished transaction is skipped; the server rolls that back
    once it notices the client gone, and since the registry now shows the
    worker reaped, the next rescue of any live worker releases the rest.
    Without a database, the rescue releases them after the silence timeout.
    """
    exitcode = child.process.exitcode
    if exitcode is None or exitcode == 0:
        return  # alive, or it stopped gracefully and recorded its stop itself
    reason = f"{exit_reason(exitcode)}, seen by its supervisor"
    try:
        with db.connect(config, "eventflo-supervisor") as conn:
            # False when it recorded its own stop (an exception unwound its loop)
            # or never registered; either way the fenced release below is safe,
            # and a worker that stopped on an error may still hold leases.
            registry.reap(conn, worker_id=child.worker_id, reason=reason)
            released = 0
            while True:
                limit = 1000
                rows = queue.rescue_expired(
                    conn,
                    max_attempts=config.max_attempts,
                    worker_timeout=config.worker_timeout,
                    limit=limit,
                    holder=child.worker_id,
                )
                for row in rows:
                    rescue.log_rescued(row, rescuer_id="supervisor")
                released += len(rows)
                if len(rows) < limit:
                    break
    except psycopg.Error as exc:
        log.warning(
            "could not release a dead worker's leases (%s); the rescue will, once it is silent",
            exc,
            extra={"worker_id": child.worker_id},
        )
        return
    log.warning(
        "released the leases of a dead worker",
        extra={"worker_id": child.worker_id, "released": released, "reason": reason},
    )


def _stop_all(config: Config, children: list[Child], shutdown_grace: float) -> None:
    """SIGTERM every worker, wait up to ``shutdown_grace`` s for all of them, then kill the rest."""
    for child in children:
        if child.process.exitcode is None and child.process.pid is not None:
            os.kill(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + shutdown_grace
    for child in children:
        child.process.join(max(0.0, deadline - time.monotonic()))
        if child.process.exitcode is None:
            log.error(
                "worker process did not stop in time; killing it",
                extra={"pid": child.process.pid, "worker_id": child.worker_id},
            )
            child.process.kill()
            child.process.join()
        release_dead_worker(config, child)
