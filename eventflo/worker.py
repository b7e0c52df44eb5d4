"""The worker: claim a batch, classify it outside any transaction, write every outcome at once.

Also the supervisor that runs N worker processes, and the signal handling
both share: the first SIGTERM/SIGINT asks for a graceful stop (finish the
batch in hand, exit 0), the second one kills.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import multiprocessing.connection
import os
import random
import secrets
import signal
import socket
import threading
import time
from types import FrameType

import psycopg

from eventflo import db, logs, queue, registry, rules
from eventflo.config import Config
from eventflo.listener import QUEUED_CHANNEL, Listener

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    """Unique per process, not per host: containers reuse host names and pids.

    The host part is cut to 32 characters so that ``application_name`` (which
    PostgreSQL truncates at 63 bytes) still shows the whole id.
    """
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


def install_stop_handlers(stop: threading.Event, signals: tuple[int, ...]) -> None:
    """First signal sets ``stop``; a second one restores the default action and re-raises (dies)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        log.info(
            "received %s: finishing the batch in hand, then exiting", signal.Signals(signum).name
        )
        stop.set()

    for signum in signals:
        signal.signal(signum, handle)


class Worker:
    """One worker process's loop. ``run()`` returns when ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        stop: threading.Event | None = None,
        worker_id: str | None = None,
        rule_table: tuple[rules.Rule, ...] = rules.DEFAULT_RULES,
        parent_pid: int | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.worker_id = worker_id or new_worker_id()
        self.rule_table = rule_table
        self.parent_pid = parent_pid
        self.listener = Listener(config, QUEUED_CHANNEL, f"eventflo-listen {self.worker_id}")
        self._conn: psycopg.Connection[dict[str, object]] | None = None
        self._rng = random.Random()
        self._next_rescue = 0.0
        self._next_heartbeat = 0.0  # the first one registers the worker
        self._poll_at: float | None = None  # when an idle wait ends with a poll
        self._registered = False
        self._claim_floor = queue.ClaimFloor()
        self._reconnect = db.ReconnectBackoff(first=0.2, cap=10.0)
        self.completed = 0
        self.failed = 0  # attempts that ended failed or retried

    @property
    def processed(self) -> int:
        """Events this worker finished (completed, failed or retried)."""
        return self.completed + self.failed

    # -- the loop ---------------------------------------------------------

    def run(self) -> None:
        log.info("worker started", extra={"worker_id": self.worker_id})
        try:
            self.listener.connect()
            look = True  # for work; False when only the heartbeat woke the loop
            while not self._should_stop():
                try:
                    self._heartbeat_if_due()
                    self._rescue_if_due()
                    if look and self.run_once():
                        continue  # drain: claim again at once while there is work
                except psycopg.OperationalError as exc:
                    self._lost_connection(exc)
                    look = True
                    continue
                except psycopg.Error as exc:
                    # Not a lost connection but a failed statement: a bug or a
                    # schema mismatch. Keep running; the batch's leases expire
                    # and are rescued, so nothing is lost.
                    log.exception(
                        "database error; backing off", extra={"worker_id": self.worker_id}
                    )
                    self._lost_connection(exc)
                    look = True
                    continue
                look = self._idle()
        finally:
            self._record_stop()
            self.close()
            counts = {"completed": self.completed, "failed": self.failed}
            log.info("worker stopped", extra={"worker_id": self.worker_id, **counts})

    def run_once(self) -> int:
        """Claim one batch, classify it, write the outcomes; the number of events claimed."""
        conn = self._connection()
        batch = queue.claim(
            conn,
            worker_id=self.worker_id,
            batch_size=self.config.batch_size,
            lease_seconds=self.config.lease_seconds,
            not_before=self._claim_floor.not_before(),
        )
        self._claim_floor.claimed(batch)
        if not batch:
            return 0
        started = time.perf_counter()
        # Per-event lines are INFO; checked once per batch, a quieter level costs nothing per event.
        per_event = log.isEnabledFor(logging.INFO)
        if per_event:
            self._log_claimed(batch)
        verdicts, failures = self._classify(batch)
        backoffs = [
            queue.backoff_seconds(
                f.event.attempt,
                base=self.config.retry_base_seconds,
                cap=self.config.retry_max_seconds,
                rng=self._rng,
            )
            for f in failures
        ]
        finished = queue.finish(
            conn,
            worker_id=self.worker_id,
            verdicts=verdicts,
            failures=failures,
            max_attempts=self.config.max_attempts,
            backoffs=backoffs,
        )
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        erred = len(finished.retried) + len(finished.failed)
        self.completed += len(finished.completed)
        self.failed += erred
        if per_event:
            self._log_outcomes(verdicts, failures, backoffs, finished, duration_ms)
        lost = len(batch) - len(finished.completed) - erred
        log.debug(
            "batch finished",
            extra={
                "worker_id": self.worker_id,
                "claimed": len(batch),
                "completed": len(finished.completed),
                "erred": erred,
                "lost_lease": lost,
                "duration_ms": duration_ms,
            },
        )
        if lost:
            log.warning(
                "lost the lease on %d events; their results were not written",
                lost,
                extra={"worker_id": self.worker_id},
            )
        return len(batch)

    def _classify(
        self, batch: list[queue.Claimed]
    ) -> tuple[list[queue.Verdict], list[queue.Failure]]:
        verdicts: list[queue.Verdict] = []
        failures: list[queue.Failure] = []
        for event in batch:
            try:
                verdict = rules.classify_event(event.event_type, event.payload, self.rule_table)
            except rules.RuleError as exc:
                failures.append(queue.Failure(event, f"rule error: {exc}", permanent=True))
            except Exception as exc:  # a bug in a rule: retry, the next attempt may differ
                error = f"unexpected error: {type(exc).__name__}: {exc}"
                failures.append(queue.Failure(event, error, permanent=False))
                # The traceback is for whoever fixes the rule; the outcome is logged once written.
                log.warning(
                    "a rule raised an unexpected error",
                    extra=self._event_fields(event, error=error),
                    exc_info=True,
                )
            else:
                verdicts.append(queue.Verdict(event, verdict))
        return verdicts, failures

    # -- one log line per state change (INFO; never the payload) ----------

    def _event_fields(self, event: queue.Claimed, **fields: object) -> dict[str, object]:
        return {
            "worker_id": self.worker_id,
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "attempt": event.attempt,
            **fields,
        }

    def _log_claimed(self, batch: list[queue.Claimed]) -> None:
        """queued → processing; ``waited_ms``: from due (run_at) to the claim, by the database clock."""
        lease = dt.timedelta(seconds=self.config.lease_seconds)
        for event in batch:
            waited_ms = round((event.locked_until - lease - event.run_at).total_seconds() * 1000, 2)
            log.info(
                "event claimed",
                extra=self._event_fields(event, status="processing", waited_ms=waited_ms),
            )

    def _log_outcomes(
        self,
        verdicts: list[queue.Verdict],
        failures: list[queue.Failure],
        backoffs: list[float],
        finished: queue.Finished,
        duration_ms: float,
    ) -> None:
        """The outcomes the batch's transaction wrote; ``duration_ms``: claim to commit.

        An error's text can quote the payload, so it is logged at DEBUG only.
        """
        completed = set(finished.completed)
        for verdict in verdicts:
            if verdict.event.event_id in completed:
                fields = self._event_fields(
                    verdict.event,
                    status="completed",
                    duration_ms=duration_ms,
                    rule=verdict.classification.rule_id,
                    severity=verdict.classification.severity.value,
                )
                log.info("event completed", extra=fields)
        retried, failed = set(finished.retried), set(finished.failed)
        debug = log.isEnabledFor(logging.DEBUG)
        for failure, backoff in zip(failures, backoffs, strict=True):
            event_id = failure.event.event_id
            if event_id not in retried and event_id not in failed:
                continue  # lost the lease: nothing was written
            fields = self._event_fields(
                failure.event,
                status="queued" if event_id in retried else "failed",
                duration_ms=duration_ms,
                cause="rule error" if failure.permanent else "unexpected error",
            )
            if event_id in retried:
                fields["retry_in_s"] = round(backoff, 3)
            if debug:
                fields["error"] = failure.error
            log.info("event retried" if event_id in retried else "event failed", extra=fields)

    def _rescue_if_due(self) -> None:
        """Any live worker releases the leases of expired claims and of stopped or silent workers.

        Cheap: it reads a small partial index (events in flight) and the registry.
        """
        now = time.monotonic()
        if now < self._next_rescue:
            return
        config = self.config
        interval = max(0.5, min(config.lease_seconds / 2, config.worker_timeout / 2, 10.0))
        self._next_rescue = now + interval * self._rng.uniform(0.8, 1.2)
        rescued = queue.rescue_expired(
            self._connection(),
            max_attempts=config.max_attempts,
            worker_timeout=config.worker_timeout,
        )
        for row in rescued:
            log.warning(
                "event lease rescued",
                extra={
                    "worker_id": self.worker_id,
                    "event_id": str(row["id"]),
                    "attempt": row["attempts"],
                    "status": row["status"],
                    "holder_worker_id": row["locked_by"],
                    "reason": row["reason"],
                    "duration_ms": round(row["held_seconds"] * 1000, 2),
                },
            )

    def _heartbeat_if_due(self) -> None:
        """Register this worker (the first time), then tell the registry it is alive."""
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        conn = self._connection()
        if self._registered:
            registry.heartbeat(
                conn, worker_id=self.worker_id, completed=self.completed, failed=self.failed
            )
        else:
            registry.register(
                conn, worker_id=self.worker_id, completed=self.completed, failed=self.failed
            )
            self._registered = True
            log.info("worker registered", extra={"worker_id": self.worker_id})
        self._next_heartbeat = now + self.config.heartbeat_seconds

    def _record_stop(self) -> None:
        """Tell the registry this worker stopped; without a database it turns silent instead."""
        if not self._registered:
            return
        try:
            registry.stop(
                self._connection(),
                worker_id=self.worker_id,
                completed=self.completed,
                failed=self.failed,
            )
        except psycopg.Error as exc:
            log.warning(
                "could not record the stop in the registry (%s); the worker will show as silent",
                exc,
                extra={"worker_id": self.worker_id},
            )

    def _idle(self) -> bool:
        """Block on LISTEN until a NOTIFY, the jittered poll interval, the next heartbeat, or a stop.

        True when the loop should look for work (a NOTIFY, a reconnect, the
        poll interval). False when only the heartbeat is due, however long the
        poll interval: the next call resumes the same wait, so heartbeats
        neither wait for the poll nor postpone it.
        """
        if self._poll_at is None:
            self._poll_at = time.monotonic() + self.config.poll_interval * self._rng.uniform(
                0.8, 1.2
            )
        while not self._should_stop():
            now = time.monotonic()
            if now >= self._poll_at:
                break
            if now >= self._next_heartbeat:
                return False
            # Short slices keep a stop request prompt: signals do not interrupt the wait.
            if self.listener.wait(min(self._poll_at, self._next_heartbeat, now + 0.5) - now):
                break
        self._poll_at = None
        return True

    def _should_stop(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("supervisor is gone; stopping", extra={"worker_id": self.worker_id})
            self.stop.set()
        return self.stop.is_set()

    # -- the connection -------------------------------------------------

    def _connection(self) -> psycopg.Connection[dict[str, object]]:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.config, f"eventflo-worker {self.worker_id}")
            self._reconnect.succeeded()
        return self._conn

    def _lost_connection(self, exc: Exception) -> None:
        """Back off (with jitter), then the next loop reconnects; claims in hand expire and are rescued."""
        self._close()
        self._poll_at = None  # after the reconnect, look for work at once
        delay = self._reconnect.failed() * self._rng.uniform(0.5, 1.0)
        log.warning(
            "database unavailable (%s); retrying in %.1f s",
            exc,
            delay,
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
    install_stop_handlers(stop, (signal.SIGTERM, signal.SIGINT))
    Worker(config, stop=stop).run()


def _supervised_main(config: Config, parent_pid: int) -> None:
    """Entry point of a supervised worker process.

    Ctrl-C in a terminal signals the whole process group; the supervisor
    forwards SIGTERM, so children ignore SIGINT to avoid counting it twice.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(config)
    stop = threading.Event()
    install_stop_handlers(stop, (signal.SIGTERM,))
    Worker(config, stop=stop, parent_pid=parent_pid).run()


def run_supervisor(config: Config, processes: int, *, shutdown_grace: float = 60.0) -> int:
    """Run ``processes`` workers, restart any that dies, stop them all on SIGTERM/SIGINT.

    Returns the exit status: 0 after a graceful stop.
    """
    logs.configure(config)
    config.require_database_url()
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold connections
    stop = threading.Event()
    install_stop_handlers(stop, (signal.SIGTERM, signal.SIGINT))

    def start() -> multiprocessing.process.BaseProcess:
        child = ctx.Process(
            target=_supervised_main, args=(config, os.getpid()), name="eventflo-worker"
        )
        child.start()
        log.info("started worker process", extra={"pid": child.pid})
        return child

    children = [start() for _ in range(processes)]
    while not stop.is_set():
        multiprocessing.connection.wait([c.sentinel for c in children], timeout=0.5)
        for index, child in enumerate(children):
            if child.exitcode is not None and not stop.is_set():
                log.error(
                    "worker process exited unexpectedly; restarting it",
                    extra={"pid": child.pid, "exitcode": child.exitcode},
                )
                stop.wait(1.0)  # do not spin if a worker dies at start-up
                if not stop.is_set():
                    children[index] = start()

    for child in children:
        if child.exitcode is None and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + shutdown_grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.exitcode is None:
            log.error("worker process did not stop in time; killing it", extra={"pid": child.pid})
            child.kill()
            child.join()
    log.info("all worker processes stopped")
    return 0
