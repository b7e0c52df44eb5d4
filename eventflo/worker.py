"""The worker: a loop that heartbeats, rescues, processes batches, and waits on LISTEN when idle.

Each part lives in a module of its own: the batch step (batch.py: claim,
classify, finish), the registry membership (heartbeat.py), the lease rescue
(rescue.py) and the idle wait (idle.py). This loop owns what they share: the
connection, the reaction to database errors, and when to stop. The first
SIGTERM/SIGINT asks for a graceful stop (finish the batch in hand, exit 0),
the second one kills (eventflo/signals.py). The supervisor that runs N
worker processes is eventflo/supervisor.py.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading

import psycopg
from psycopg.pq import TransactionStatus

from eventflo import db, logs, queue, rules, signals
from eventflo.batch import BatchStep
from eventflo.config import Config
from eventflo.heartbeat import Heartbeat
from eventflo.idle import IdleWait
from eventflo.listener import QUEUED_CHANNEL, Listener
from eventflo.rescue import Rescuer

log = logging.getLogger(__name__)

STOP_MESSAGE = "finishing the batch in hand, then exiting"


def new_worker_id(*, pid: int | None = None, suffix: str | None = None) -> str:
    """Unique per process, not per host: containers reuse host names and pids.

    A supervisor names its child before the child runs: it passes the child
    the random ``suffix`` and, knowing the child's ``pid``, makes the same id.
    The host part is cut to 32 characters so that ``application_name`` (which
    PostgreSQL truncates at 63 bytes) still shows the whole id.
    """
    pid = os.getpid() if pid is None else pid
    suffix = secrets.token_hex(3) if suffix is None else suffix
    return f"{socket.gethostname()[:32]}:{pid}:{suffix}"


class Worker:
    """One worker process's loop. ``run()`` returns when ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        stop: threading.Event | None = None,
        worker_id: str | None = None,
        rule_set: rules.RuleSet | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.worker_id = worker_id or new_worker_id()
        self.parent_pid = parent_pid  # when the supervisor's pid stops being ours, it is gone
        rng = random.Random()
        self._rng = rng
        self.listener = Listener(config, QUEUED_CHANNEL, f"eventflo-listen {self.worker_id}")
        self.batch = BatchStep(config, worker_id=self.worker_id, rule_set=rule_set, rng=rng)
        self.heartbeat = Heartbeat(config, worker_id=self.worker_id)
        self.rescuer = Rescuer(config, worker_id=self.worker_id, rng=rng)
        self.idle = IdleWait(
            self.listener,
            poll_interval=config.poll_interval,
            should_stop=self._should_stop,
            rng=rng,
        )
        self._conn: psycopg.Connection[queue.Row] | None = None
        self._reconnect = db.ReconnectBackoff(first=0.2, cap=10.0)
        # Failing statements (a bug, a schema mismatch) back off too, on their own schedule.
        self._statement_backoff = db.ReconnectBackoff(first=0.2, cap=10.0)

    @property
    def completed(self) -> int:
        """Events this worker completed."""
        return self.batch.completed

    @property
    def failed(self) -> int:
        """Attempts of this worker that ended failed or retried."""
        return self.batch.failed

    @property
    def processed(self) -> int:
        """Events this worker finished (completed, failed or retried)."""
        return self.completed + self.failed

    def run(self) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        try:
            self.listener.connect()
            look = True  # for work; False when only the heartbeat woke the loop
            while not self._should_stop():
                try:
                    conn = self._connection()
                    self.heartbeat.beat_if_due(conn, completed=self.completed, failed=self.failed)
                    self.rescuer.run_if_due(conn)
                    found = look and self.batch.run(conn)
                    self._statement_backoff.succeeded()
                    if found:
                        continue  # drain: claim again at once while there is work
                except psycopg.OperationalError as exc:
                    self._lost_connection(exc)
                    look = True
                    continue
                except psycopg.Error as exc:
                    self._statement_failed(exc)
                    look = True
                    continue
                look = self.idle.wait(heartbeat_at=self.heartbeat.next_due)
        finally:
            self.heartbeat.record_stop(
                self._connection, completed=self.completed, failed=self.failed
            )
            self.close()
            counts = {"completed": self.completed, "failed": self.failed}
            log.info("worker stopped", extra={"worker_id": self.worker_id, **counts})

    def run_once(self) -> int:
        """Claim one batch, classify it, write the outcomes; the number of events claimed."""
        return self.batch.run(self._connection())

    def _should_stop(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("supervisor is gone; stopping", extra={"worker_id": self.worker_id})
            self.stop.set()
        return self.stop.is_set()

    # -- the connection and its troubles ---------------------------------

    def _connection(self) -> psycopg.Connection[queue.Row]:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.config, f"eventflo-worker {self.worker_id}")
            self._reconnect.succeeded()
        return self._conn

    def _lost_connection(self, exc: psycopg.OperationalError) -> None:
        """Back off (with jitter), then reconnect; claims in hand expire and are rescued."""
        self._close()
        self.idle.look_now()  # after the reconnect, look for work at once
        delay = self._reconnect.failed() * self._rng.uniform(0.5, 1.0)
        log.warning(
            "database unavailable (%s); retrying in %.1f s",
            exc,
            delay,
            extra={"worker_id": self.worker_id},
        )
        self.stop.wait(delay)

    def _statement_failed(self, exc: psycopg.Error) -> None:
        """A statement failed but the database answered: a bug or a schema mismatch.

        Keep running, and keep the connection while it is usable; the
        batch's leases expire and are rescued, so nothing is lost.
        """
        conn = self._conn
        if conn is not None and (
            conn.broken or conn.info.transaction_status != TransactionStatus.IDLE
        ):
            self._close()
        self.idle.look_now()
        delay = self._statement_backoff.failed() * self._rng.uniform(0.5, 1.0)
        log.error(
            "database error (%s: %s); retrying in %.1f s",
            type(exc).__name__,
            exc,
            delay,
            exc_info=True,
            extra={"worker_id": self.worker_id},
        )
        self.stop.wait(delay)

    def close(self) -> None:
        """Close both connections; ``run()`` does it on exit, a caller of ``run_once()`` must."""
        self.listener.close()
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def run_worker(config: Config) -> None:
    """One worker in this process, stopped by SIGTERM/SIGINT (``python worker.py``)."""
    logs.configure(config)
    config.require_database_url()
    stop = threading.Event()
    signals.install_graceful_stop(stop, message=STOP_MESSAGE)
    Worker(config, stop=stop).run()


def run_supervisor(config: Config, processes: int, *, shutdown_grace: float = 60.0) -> int:
    """Run ``processes`` workers under a supervisor (eventflo/supervisor.py); the exit status."""
    # Imported here: the supervisor imports this module to run its children.
    from eventflo import supervisor

    return supervisor.run(config, processes, shutdown_grace=shutdown_grace)
