"""The deliverer: sends the outbox's deliveries, retries them on a schedule, tracks endpoints.

A loop per process (``eventflo deliver``): it claims due deliveries with
``FOR UPDATE SKIP LOCKED`` and a lease (so any number of deliverers share
the outbox, and one killed mid-request loses nothing: the lease expires and
the delivery is attempted again, under the same ``webhook-id``), sends them
from a pool of threads, and writes each outcome with its attempt row,
fenced on the lease, in one transaction per round.

Outcomes: a 2xx is delivered. A 410 Gone fails the delivery and disables
its endpoint. Anything else (another status, a timeout, a refused
connection, an address that may not be reached) is attempted again after
the next delay of the schedule (``EVENTFLO_DELIVERY_RETRY_SCHEDULE``,
jittered by ±10 %), or after a 429's or a 503's ``Retry-After`` when that
is longer; after the last one it is failed, kept and replayable. A failing
endpoint (no answer, a 5xx, a 429) is backed off as a whole: paused on its
own failure streak, then probed with one delivery at a time; one that has
failed everything for ``EVENTFLO_ENDPOINT_DISABLE_AFTER`` is disabled. A
process has at most ``EVENTFLO_DELIVERY_PER_ENDPOINT`` requests in flight
to one endpoint, so a slow one never holds more threads than that and
never slows the others.

It wakes on NOTIFY ``eventflo_deliveries`` (sent with each batch of
verdicts that made deliveries) and polls every ``EVENTFLO_POLL_INTERVAL``
for retries that come due. SIGTERM stops claiming and waits for the
requests in flight (at most two timeouts), then records them and exits.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime as dt
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from eventflo import db, logs, queue, signals, sql, webhooks
from eventflo.config import Config
from eventflo.listener import Listener
from eventflo.sender import Outcome, Sender
from eventflo.worker import new_worker_id

log = logging.getLogger(__name__)

QUERIES = sql.load("deliverer.sql")

CHANNEL = "eventflo_deliveries"
DISABLE_CHECK_SECONDS = 60.0
STOP_MESSAGE = "finishing the requests in flight, then exiting"

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Attempt:
    """A claimed delivery's attempt: what was sent, and what came back."""

    claim: Row
    outcome: Outcome
    started_at: dt.datetime


def request_for(claim: Row, *, public_url: str | None, now: dt.datetime) -> webhooks.Request:
    """The request of a claimed delivery in its endpoint's format."""
    event_id = str(claim["event_id"])
    event = {
        "event_id": event_id,
        "event_type": claim["event_type"],
        "source": claim["source"],
        "payload": claim["payload"],
        "created_at": claim["event_created_at"].isoformat(),
    }
    event_url = f"{public_url}/events/{event_id}" if public_url else None
    delivery = webhooks.Delivery(
        str(claim["id"]), event, claim["result"], claim["created_at"], event_url
    )
    if claim["format"] == "slack":
        return webhooks.slack(delivery)
    if claim["format"] == "pagerduty":
        return webhooks.pagerduty(delivery, routing_key=claim["routing_key"])
    signing = [claim["secret"], *([claim["previous_secret"]] if claim["previous_secret"] else [])]
    return webhooks.standard(delivery, secrets=signing, now=now)


def next_step(
    attempts: int, outcome: Outcome, schedule: Sequence[float], rng: random.Random
) -> tuple[str, float]:
    """The delivery's status after this attempt, and the delay before the next one."""
    if outcome.delivered:
        return "delivered", 0.0
    if outcome.gone or outcome.status_code == 410 or attempts >= len(schedule):
        return "failed", 0.0
    delay = schedule[attempts] * rng.uniform(0.9, 1.1)
    # A Retry-After lengthens the wait, never shortens it (a 0, or a date past by clock skew,
    # would spend the whole schedule in a second).
    return "pending", max(delay, outcome.retry_after_seconds or 0.0)


def endpoint_at_fault(outcome: Outcome) -> bool:
    """Whether a failed attempt says the endpoint is unwell (so it is paused as a whole).

    No answer (a timeout, a refused connection), a 5xx, a 429: yes. Another
    4xx says the endpoint is up and refused this one message: its other
    deliveries go on.
    """
    code = outcome.status_code
    return code is None or code >= 500 or code == 429


def endpoint_pause(schedule: Sequence[float], failure_streak: int, outcome: Outcome) -> float:
    """How long a failing endpoint waits before its next probe: the schedule, by its streak."""
    delay = schedule[min(max(failure_streak, 1), len(schedule) - 1)] if len(schedule) > 1 else 5.0
    return max(delay, 1.0, outcome.retry_after_seconds or 0.0)


# How often one deliverer process writes a healthy endpoint's last success, at most.
SUCCESS_WRITE_SECONDS = 1.0


class Deliverer:
    """One deliverer process's loop; ``run()`` returns when ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        *,
        stop: threading.Event | None = None,
        deliverer_id: str | None = None,
        sender: Sender | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.deliverer_id = deliverer_id or new_worker_id()  # host:pid:random, as workers'
        self.sender = sender or Sender(
            timeout_seconds=config.delivery_timeout,
            allow_private=config.allow_private_endpoints,
            connections_per_host=config.delivery_per_endpoint,
        )
        # Covers a request's worst case (connect, then reads) and the round's recording.
        self.lease_seconds = 2 * config.delivery_timeout + 30.0
        self._rng = rng or random.Random()
        self._threads = concurrent.futures.ThreadPoolExecutor(
            config.delivery_concurrency, thread_name_prefix="eventflo-deliver"
        )
        self._in_flight: dict[concurrent.futures.Future[Attempt], Row] = {}
        # When this process last wrote each healthy endpoint's last success (monotonic).
        self._success_written: dict[uuid.UUID, float] = {}
        self._listener = Listener(config, CHANNEL, f"eventflo-listen {self.deliverer_id}")
        self._conn: psycopg.Connection[Row] | None = None
        self._next_disable_check = 0.0
        self._look = True  # claim in the next round
        self._next_poll = 0.0
        self.waiting = threading.Event()  # set while idle, waiting for a NOTIFY (for tests)
        self.delivered = 0
        self.failed = 0
        self.retried = 0

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        log.info("deliverer started", extra={"deliverer_id": self.deliverer_id})
        # urllib3 warns with whole URLs (a Slack token is in the path): not into our logs.
        logging.getLogger("urllib3").setLevel(logging.ERROR)
        if self.config.allow_private_endpoints:
            log.warning(
                "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on: deliveries may go to plain http:// and to"
                " private or loopback addresses; use this only for development, tests or"
                " receivers on your own network"
            )
        backoff = db.ReconnectBackoff(first=0.2, cap=10.0)
        try:
            self._listener.connect()
            while not self.stop.is_set():
                try:
                    self._round()
                    backoff.succeeded()
                except Exception as exc:  # the database, or a bug: back off, keep running
                    if isinstance(exc, psycopg.Error):
                        self._close_connection()
                        log.warning("database error: %s", exc, extra=self._fields())
                    else:
                        log.exception("a delivery round failed", extra=self._fields())
                    self._look = True
                    self.stop.wait(backoff.failed() * self._rng.uniform(0.5, 1.0))
        finally:
            self._finish_in_flight()
            self.close()
            log.info(
                "deliverer stopped",
                extra={
                    "deliverer_id": self.deliverer_id,
                    "delivered": self.delivered,
                    "retried": self.retried,
                    "failed": self.failed,
                },
            )

    def _round(self) -> None:
        conn = self._connection()
        claimed = self._claim(conn) if self._claim_due() else 0
        if self._in_flight:
            done, _ = concurrent.futures.wait(
                self._in_flight, timeout=0.05, return_when=concurrent.futures.FIRST_COMPLETED
            )
            # Out of the in-flight set before recording: a round that cannot be recorded is
            # not recorded again and again (its leases expire; the deliveries are retried).
            for future in done:
                del self._in_flight[future]
            if done:
                self._look = True  # slots are free again
            self._record(conn, [future.result() for future in done])
            if self._listener_has_news():
                self._look = True
        self._disable_failing_if_due(conn)
        if not claimed and not self._in_flight and not self._look:
            self._idle()
            self._look = True

    def _claim_due(self) -> bool:
        """Claim after a NOTIFY, a finished request or the poll interval, not every round."""
        if self._look or time.monotonic() >= self._next_poll:
            self._look = False
            self._next_poll = time.monotonic() + self.config.poll_interval
            return True
        return False

    def _listener_has_news(self) -> bool:
        """Read what NOTIFYs arrived while busy (so none pile up); whether there was any."""
        news = False
        for _ in range(1000):
            if not self._listener.wait(0):
                break
            news = True
        return news

    def _idle(self) -> None:
        """Until a NOTIFY, the poll interval, or a stop (looked at twice a second)."""
        deadline = time.monotonic() + self.config.poll_interval
        self.waiting.set()
        try:
            while not self.stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._listener.wait(min(0.5, remaining)):
                    return
        finally:
            self.waiting.clear()

    def _fields(self) -> dict[str, Any]:
        return {"deliverer_id": self.deliverer_id}

    def run_once(self) -> int:
        """Claim what is due, send it, record it; the number attempted (tests, the bench)."""
        conn = self._connection()
        claimed = self._claim(conn)
        attempts = [f.result() for f in list(self._in_flight)]
        self._record(conn, attempts)
        self._in_flight.clear()
        self._disable_failing_if_due(conn)
        return claimed

    def _claim(self, conn: psycopg.Connection[Row]) -> int:
        free = self.config.delivery_concurrency - len(self._in_flight)
        if free <= 0 or self.stop.is_set():
            return 0
        busy = collections.Counter(claim["endpoint_id"] for claim in self._in_flight.values())
        rows = conn.execute(
            QUERIES["claim_deliveries"],
            {
                "deliverer_id": self.deliverer_id,
                "batch_size": free,
                "per_endpoint": self.config.delivery_per_endpoint,
                "busy_endpoints": list(busy),
                "busy_counts": list(busy.values()),
                "lease_seconds": self.lease_seconds,
            },
        ).fetchall()
        for row in rows:
            self._in_flight[self._threads.submit(self._attempt, row)] = row
        return len(rows)

    def _attempt(self, claim: Row) -> Attempt:
        started = dt.datetime.now(dt.UTC)
        if claim["event_type"] is None:  # purged despite its pending delivery: nothing to send
            outcome = Outcome(None, None, "its event no longer exists", 0.0, gone=True, ours=True)
            return Attempt(claim, outcome, started)
        try:
            request = request_for(claim, public_url=self.config.public_url, now=started)
            return Attempt(claim, self.sender.send(claim["url"], request), started)
        except Exception as exc:  # a bug or an odd stored row: this attempt fails alone
            log.exception("a delivery attempt failed", extra={"delivery_id": str(claim["id"])})
            error = f"unexpected error: {type(exc).__name__}: {exc}"
            return Attempt(claim, Outcome(None, None, error[:1000], 0.0, ours=True), started)

    # -- outcomes ---------------------------------------------------------------------------

    def _record(self, conn: psycopg.Connection[Row], attempts: Sequence[Attempt]) -> None:
        if not attempts:
            return
        schedule = self.config.delivery_retry_schedule
        steps = [next_step(a.claim["attempts"], a.outcome, schedule, self._rng) for a in attempts]
        # Pipelined, as the worker's outcomes are (queue.pipelined_transaction): a few round
        # trips for the round, not one per statement; the main loop claims again after it.
        must = self._must_write(attempts)
        may = {a.claim["endpoint_id"] for a in attempts} - must
        with queue.pipelined_transaction(conn):
            # Endpoints first, in id order, as every other lock on them is taken (in the
            # common case of a busy, healthy endpoint: none).
            conn.execute(QUERIES["lock_endpoints"], {"must": list(must), "may": list(may)})
            rows = conn.execute(
                QUERIES["record_attempts"],
                {
                    "deliverer_id": self.deliverer_id,
                    "ids": [a.claim["id"] for a in attempts],
                    "locked_until": [a.claim["locked_until"] for a in attempts],
                    "statuses": [status for status, _ in steps],
                    "delays": [delay for _, delay in steps],
                    "codes": [a.outcome.status_code for a in attempts],
                    "errors": [a.outcome.error for a in attempts],
                    "bodies": [a.outcome.response_body for a in attempts],
                    "started_at": [a.started_at for a in attempts],
                    "durations": [a.outcome.duration_ms for a in attempts],
                },
            ).fetchall()
            # Only the attempts still held count: one whose lease was taken over says nothing.
            held = {row["delivery_id"] for row in rows}
            recorded = [
                (attempt, step)
                for attempt, step in zip(attempts, steps, strict=True)
                if attempt.claim["id"] in held
            ]
            written = self._record_health(conn, [a for a, _ in recorded], schedule, must)
            gone = list(
                {a.claim["endpoint_id"] for a, _ in recorded if a.outcome.status_code == 410}
            )
            disabled = (
                conn.execute(QUERIES["disable_gone_endpoints"], {"endpoint_ids": gone}).fetchall()
                if gone
                else []
            )
        now = time.monotonic()  # committed: what was written is what the table says
        for endpoint_id, healthy in written.items():
            if healthy:
                self._success_written[endpoint_id] = now
            else:
                self._success_written.pop(endpoint_id, None)
        for attempt, (status, delay) in recorded:
            self._log(attempt, status, delay)
        for row in disabled:
            log.warning("endpoint %s answered 410 Gone: disabled", row["name"])

    def _must_write(self, attempts: Sequence[Attempt]) -> set[uuid.UUID]:
        """The endpoints whose rows this round changes for certain.

        A failure (or a 410) always does. A success does on an endpoint that was
        failing when claimed, and otherwise once a second per process: the last
        success of a busy, healthy endpoint is kept to the second, without every
        round of every deliverer locking and writing its row (which made the
        deliverers take turns on it). The others are written only if they are
        failing or paused by then (another deliverer's failures): the SQL decides.
        """
        now = time.monotonic()
        fresh = {
            endpoint_id
            for endpoint_id, written in self._success_written.items()
            if now - written < SUCCESS_WRITE_SECONDS
        }
        return {
            a.claim["endpoint_id"]
            for a in attempts
            if not a.outcome.ours
            and (
                not a.outcome.delivered
                or a.claim["failure_streak"] > 0
                or a.claim["endpoint_id"] not in fresh
            )
        }

    def _record_health(
        self,
        conn: psycopg.Connection[Row],
        attempts: Sequence[Attempt],
        schedule: Sequence[float],
        must: set[uuid.UUID],
    ) -> dict[uuid.UUID, bool]:
        """Per endpoint: a success clears its record; failures count and may pause it.

        The endpoints in ``must`` are written, and returned with whether each was
        left healthy; the others only if failing or paused now (see ``_must_write``).
        """
        health: dict[uuid.UUID, list[Any]] = {}  # endpoint id: [succeeded, failures, pause]
        for attempt in attempts:
            outcome = attempt.outcome
            if outcome.ours:
                continue  # not the endpoint's doing
            entry = health.setdefault(attempt.claim["endpoint_id"], [False, 0, 0.0])
            if outcome.delivered:
                entry[0] = True
                continue
            entry[1] += 1
            if endpoint_at_fault(outcome):
                streak = attempt.claim["failure_streak"] + entry[1]
                entry[2] = max(entry[2], endpoint_pause(schedule, streak, outcome))
        if not health:
            return {}
        conn.execute(
            QUERIES["record_endpoint_health"],
            {
                "endpoint_ids": list(health),
                "succeeded": [entry[0] for entry in health.values()],
                "failures": [entry[1] for entry in health.values()],
                "pause_seconds": [entry[2] for entry in health.values()],
                "must": [endpoint_id in must for endpoint_id in health],
            },
        )
        return {
            endpoint_id: succeeded
            for endpoint_id, (succeeded, _, _) in health.items()
            if endpoint_id in must
        }

    def _log(self, attempt: Attempt, status: str, delay: float) -> None:
        outcome = attempt.outcome
        fields = {
            "deliverer_id": self.deliverer_id,
            "delivery_id": str(attempt.claim["id"]),
            "endpoint": attempt.claim["endpoint"],
            "attempt": attempt.claim["attempts"],
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
        }
        if status == "delivered":
            self.delivered += 1
            log.debug("delivery delivered", extra=fields)
        elif status == "pending":
            self.retried += 1
            log.info(
                "delivery retried in %.1f s: %s",
                delay,
                outcome.error or f"status {outcome.status_code}",
                extra=fields,
            )
        else:
            self.failed += 1
            log.warning(
                "delivery failed: %s",
                outcome.error or f"status {outcome.status_code}",
                extra=fields,
            )

    def _disable_failing_if_due(self, conn: psycopg.Connection[Row]) -> None:
        if time.monotonic() < self._next_disable_check:
            return
        self._next_disable_check = time.monotonic() + DISABLE_CHECK_SECONDS
        params = {"disable_after": self.config.endpoint_disable_after}
        for row in conn.execute(QUERIES["disable_failing_endpoints"], params):
            log.warning("endpoint %s disabled: %s", row["name"], row["disabled_reason"])

    # -- stopping ---------------------------------------------------------------------------

    def _finish_in_flight(self) -> None:
        """Wait (at most two timeouts) for the requests in flight, and record them."""
        if not self._in_flight:
            return
        log.info(STOP_MESSAGE, extra={"deliverer_id": self.deliverer_id})
        done, _ = concurrent.futures.wait(self._in_flight, timeout=2 * self.config.delivery_timeout)
        self._in_flight.clear()
        try:
            self._record(self._connection(), [f.result() for f in done])
        except Exception as exc:  # their leases expire and they are attempted again
            log.warning("could not record the last attempts: %s", exc, extra=self._fields())

    def _connection(self) -> psycopg.Connection[Row]:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.config, f"eventflo-deliverer {self.deliverer_id}")
        return self._conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._listener.close()
        self.sender.close()
        self._close_connection()


def run_deliverer(config: Config) -> None:
    """One deliverer in this process, stopped by SIGTERM/SIGINT."""
    logs.configure(config)
    config.require_database_url()
    stop = threading.Event()
    signals.install_graceful_stop(stop, message=STOP_MESSAGE)
    Deliverer(config, stop=stop).run()


def run_processes(config: Config, processes: int, *, shutdown_grace: float | None = None) -> int:
    """``processes`` deliverers in child processes; a child that dies is restarted.

    SIGTERM or Ctrl-C is passed on to every child, which finishes its
    requests in flight; the exit status is 0 when every child stopped cleanly.
    """
    import multiprocessing

    logs.configure(config)
    config.require_database_url()
    stop = threading.Event()
    signals.install_graceful_stop(stop, message=STOP_MESSAGE)
    grace = shutdown_grace if shutdown_grace is not None else 2 * config.delivery_timeout + 10
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=child_main, args=(config,)) for _ in range(processes)]
    for child in children:
        child.start()
    while not stop.wait(1.0):
        for index, child in enumerate(children):
            if not child.is_alive() and child.exitcode not in (None, 0):
                log.warning("a deliverer process exited (%s); restarting it", child.exitcode)
                children[index] = ctx.Process(target=child_main, args=(config,))
                children[index].start()
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
    # A child the SIGTERM found still starting (before its handler) had nothing in flight.
    clean = (0, -signal.SIGTERM)
    return 0 if all(child.exitcode in clean for child in children) else 1


def child_main(config: Config) -> None:
    """A deliverer under ``run_processes``: stopped by its parent's SIGTERM alone.

    Ctrl-C reaches the whole process group and the parent forwards SIGTERM;
    counting both would be a second signal, which kills at once.
    """
    signals.ignore_terminal_interrupt()
    logs.configure(config)
    stop = threading.Event()
    signals.install_graceful_stop(stop, (signal.SIGTERM,), message=STOP_MESSAGE)
    Deliverer(config, stop=stop).run()
