"""Queue semantics on the events table: claim, complete, fail or retry, rescue, replay.

Every function takes the connection first. Each runs on an autocommit
connection and makes its own transaction where it needs one; ``finish``
refuses a connection already inside a transaction (see pipelined_transaction).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from uuid_utils.compat import uuid7

from eventflo.rules import Classification
from eventflo.sql import QUERIES
from eventflo.status import Status

if TYPE_CHECKING:  # outbox imports this module
    from eventflo.outbox import Planned

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Claimed:
    """An event leased to this worker for one attempt."""

    event_id: uuid.UUID
    event_type: str
    source: str | None  # conditions may read it
    payload: dict[str, Any]
    attempt: int
    # Until when the lease runs: with the worker id, it names the lease the
    # completion is fenced on.
    locked_until: dt.datetime
    run_at: dt.datetime
    # The active rule version the claim read: the batch is judged by it, and only by it.
    rules_version: int = 1
    # The endpoints' generation the claim read: the batch's deliveries go to those endpoints.
    endpoints_generation: int = 0


@dataclasses.dataclass(frozen=True)
class Verdict:
    event: Claimed
    classification: Classification


@dataclasses.dataclass(frozen=True)
class Failure:
    """An attempt that erred. ``permanent`` (a rule error) fails the event without retrying."""

    event: Claimed
    error: str
    permanent: bool


@dataclasses.dataclass(frozen=True)
class Finished:
    """What a batch's outcome transaction wrote: the events it still held, by outcome.

    An event of the batch in none of the lists had lost its lease; nothing was written for it.
    """

    completed: list[uuid.UUID]
    retried: list[uuid.UUID]
    failed: list[uuid.UUID]


def claim(
    conn: psycopg.Connection[Row],
    *,
    worker_id: str,
    batch_size: int,
    lease_seconds: float,
    not_before: dt.datetime | None = None,
) -> list[Claimed]:
    """Lease up to ``batch_size`` due events; the claim commits before any rule runs.

    ``not_before`` skips the part of the claim index below it (see ClaimFloor);
    None reads it from the front.
    """
    # Plain tuples: decoding the batch is a good part of a worker's own cost.
    with conn.cursor(row_factory=tuple_row) as cursor:
        rows = cursor.execute(
            QUERIES["claim_events"],
            {
                "worker_id": worker_id,
                "batch_size": batch_size,
                "lease_seconds": lease_seconds,
                "not_before": not_before,
            },
        ).fetchall()
    return [Claimed(*row) for row in rows]


class ClaimFloor:
    """Where a worker's next claim starts reading the claim index.

    A claimed event leaves a dead entry at the front of the claim index until
    vacuum removes it, and vacuum cannot while any older snapshot is open (a
    long report, a forgotten BEGIN). A claim that always read from the front
    would step over every event processed since, and slow down with each one.
    So a claim starts ``MARGIN`` below the oldest event of the worker's
    previous batch: nothing below it is still queued, except an event whose
    transaction took longer than ``MARGIN`` to commit after stamping its
    ``run_at``. A sweep from the front every ``SWEEP_SECONDS`` claims those.
    """

    MARGIN = dt.timedelta(seconds=0.25)
    SWEEP_SECONDS = 30.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._floor: dt.datetime | None = None
        self._next_sweep = 0.0  # the first claim reads from the front

    def not_before(self) -> dt.datetime | None:
        """The lower bound for the next claim; None when it is time to sweep from the front."""
        if self._clock() >= self._next_sweep:
            self._next_sweep = self._clock() + self.SWEEP_SECONDS
            return None
        return self._floor

    def claimed(self, batch: Sequence[Claimed]) -> None:
        """Move the floor to just below this batch; an empty claim leaves it where it was."""
        if batch:
            self._floor = min(event.run_at for event in batch) - self.MARGIN


def release(conn: psycopg.Connection[Row], *, worker_id: str, batch: Sequence[Claimed]) -> None:
    """Give a claimed batch back as it was, the attempt not spent (fenced on the lease).

    For a worker that cannot load the rules the claim named: the events wait
    for a worker that can, and run out of no attempts meanwhile.
    """
    by_lease: dict[dt.datetime, list[uuid.UUID]] = {}
    for event in batch:
        by_lease.setdefault(event.locked_until, []).append(event.event_id)
    with conn.transaction():
        for locked_until, event_ids in by_lease.items():
            conn.execute(
                QUERIES["release_claims"],
                {"worker_id": worker_id, "locked_until": locked_until, "event_ids": event_ids},
            )


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    Jitter spreads the retries of a batch that failed together.
    """
    return rng.uniform(0, min(cap, base * 2 ** min(attempt - 1, 62)))


def finish(
    conn: psycopg.Connection[Row],
    *,
    worker_id: str,
    verdicts: Sequence[Verdict],
    failures: Sequence[Failure],
    max_attempts: int,
    backoffs: Sequence[float],
    rules_version: int | None = None,
    deliveries: Planned | None = None,
) -> Finished:
    """Write a batch's outcomes in one transaction; returns the events written, by outcome.

    Every write is fenced on the lease: an event whose lease another worker
    rescued is left alone, so a slow worker can never overwrite it.
    ``backoffs`` pairs with ``failures``. The results record ``rules_version``,
    by default the version the claim returned. ``deliveries`` (the outbox)
    are written for the completed events only.
    """
    completed: list[Row] = []
    erred: list[Row] = []
    # BEGIN travels with the completion, and what needs no answer (the
    # results, NOTIFY, COMMIT) travels together: two round trips, not five,
    # between an event's claim and its committed result.
    with pipelined_transaction(conn):
        # One lease per claim: a batch is one group, unless the caller mixed claims.
        by_lease: dict[dt.datetime, list[Verdict]] = {}
        for verdict in verdicts:
            by_lease.setdefault(verdict.event.locked_until, []).append(verdict)
        for locked_until, leased in by_lease.items():
            held = conn.execute(
                QUERIES["complete_events"],
                {
                    "worker_id": worker_id,
                    "locked_until": locked_until,
                    "event_ids": [v.event.event_id for v in leased],
                },
            ).fetchall()
            version = leased[0].event.rules_version if rules_version is None else rules_version
            _store_results(conn, leased, held={row["id"] for row in held}, rules_version=version)
            completed.extend(held)
        if deliveries is not None and completed:
            _store_deliveries(conn, deliveries.held({row["id"] for row in completed}))
        if failures:
            erred = conn.execute(
                QUERIES["fail_events"],
                {
                    "worker_id": worker_id,
                    "max_attempts": max_attempts,
                    "event_ids": [f.event.event_id for f in failures],
                    "attempts": [f.event.attempt for f in failures],
                    "errors": [f.error for f in failures],
                    "permanent": [f.permanent for f in failures],
                    "backoff_seconds": list(backoffs),
                },
            ).fetchall()
        _forget_and_notify(conn, completed=bool(completed), rows=erred)
    return Finished(
        completed=[row["id"] for row in completed],
        retried=[row["id"] for row in erred if row["status"] != Status.failed],
        failed=[row["id"] for row in erred if row["status"] == Status.failed],
    )


@contextlib.contextmanager
def pipelined_transaction(conn: psycopg.Connection[Row]) -> Iterator[None]:
    """A transaction whose BEGIN and COMMIT ride in the same round trips as its statements.

    psycopg's own ``transaction()`` in pipeline mode waits for the server after
    BEGIN, before COMMIT and after it: three round trips more per transaction.
    Here BEGIN goes out with the first statement whose answer is fetched, and
    COMMIT with everything after the last one. On any error the transaction
    is rolled back (the connection is autocommit, so nothing else would); a
    connection too broken to roll back has nothing left to keep, and the
    original error is the one raised.

    Only on an autocommit connection outside any transaction: inside a
    caller's transaction the COMMIT would commit the caller's work too, and
    the rollback would throw it away.
    """
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        raise psycopg.ProgrammingError(
            "pipelined_transaction needs an autocommit connection outside any transaction"
        )
    try:
        with conn.pipeline():
            conn.execute(QUERIES["begin"])
            yield
            conn.execute(QUERIES["commit"])
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        raise


def _store_results(
    conn: psycopg.Connection[Row],
    verdicts: Sequence[Verdict],
    *,
    held: set[uuid.UUID],
    rules_version: int,
) -> None:
    """Store the verdicts of the events the completion still held (usually all of them)."""
    event_ids: list[uuid.UUID] = []
    positions: list[int] = []
    # Each distinct verdict once, referred to by its 1-based position: a rule without
    # placeholders gives one verdict to all its events, a rule with them one per value.
    table: dict[Classification, int] = {}
    for verdict in verdicts:
        if verdict.event.event_id not in held:
            continue
        classification = verdict.classification
        position = table.get(classification)
        if position is None:
            position = table[classification] = len(table) + 1
        event_ids.append(verdict.event.event_id)
        positions.append(position)
    if not event_ids:
        return
    distinct = list(table)
    conn.execute(
        QUERIES["store_results"],
        {
            "event_ids": event_ids,
            "verdicts": positions,
            "severities": [c.severity.value for c in distinct],
            "reasons": [c.reason for c in distinct],
            "recommendations": [c.recommendation for c in distinct],
            "escalates": [c.should_escalate for c in distinct],
            "rule_ids": [c.rule_id for c in distinct],
            "rules_version": rules_version,
        },
    )


def _store_deliveries(conn: psycopg.Connection[Row], deliveries: Planned) -> None:
    """The outbox rows of the completed events, in the completion's transaction."""
    if not len(deliveries):
        return
    conn.execute(QUERIES["notify_deliveries"])  # delivered at commit, like the rows
    conn.execute(
        QUERIES["store_deliveries"],
        {
            # Made here, not by the column's default: eventflo_uuidv7(), a SQL function, cost
            # about a third of the insert's server time.
            "ids": [uuid7() for _ in range(len(deliveries))],
            "targets": list(dict.fromkeys(deliveries.endpoint_ids)),
            "endpoint_ids": deliveries.endpoint_ids,
            "event_ids": deliveries.event_ids,
            "positions": deliveries.positions,
            # As jsonb[]: each result is parsed once per batch, not once per delivery.
            "results": [Jsonb(result) for result in deliveries.results],
        },
    )


def _forget_and_notify(
    conn: psycopg.Connection[Row], *, completed: bool, rows: Sequence[Row]
) -> None:
    """Inside the outcome's transaction: drop stale verdicts of failed events, wake long-polls.

    The delete runs only when something failed (rarely), so the hot path never
    touches the results table for it.
    """
    failed = [row["id"] for row in rows if row["status"] == Status.failed]
    if failed:
        conn.execute(QUERIES["forget_results"], {"event_ids": failed})
    if completed or failed:
        conn.execute(QUERIES["notify_finished"])


def rescue_expired(
    conn: psycopg.Connection[Row],
    *,
    max_attempts: int,
    worker_timeout: float,
    limit: int = 1000,
    holder: str | None = None,
) -> list[Row]:
    """Give leases back to the queue (or fail events out of attempts) that no worker will finish.

    Those are the expired leases, and every lease of a worker the registry
    shows stopped, reaped, or silent for longer than ``worker_timeout``
    seconds. With ``holder``, only the leases of that worker: a supervisor
    releasing its dead child's claims after registry.reap.
    Returns the rescued events: id, status, locked_by, attempts, reason, held_seconds.
    """
    with conn.transaction():
        rows = conn.execute(
            QUERIES["rescue_expired"],
            {
                "max_attempts": max_attempts,
                "worker_timeout": worker_timeout,
                "limit": limit,
                "holder": holder,
            },
        ).fetchall()
        _forget_and_notify(conn, completed=False, rows=rows)
    return rows


@dataclasses.dataclass(frozen=True)
class ReplaySelection:
    """Which events a replay touches. Only finished events can be replayed."""

    statuses: tuple[str, ...] = (Status.failed,)
    event_type: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    event_ids: tuple[uuid.UUID, ...] | None = None
    # Only events whose result a rule version older than this judged (completed ones, then).
    rules_version_before: int | None = None


def replay_candidates(conn: psycopg.Connection[Row], selection: ReplaySelection) -> list[uuid.UUID]:
    """Ids a replay would requeue now, oldest first."""
    rows = conn.execute(
        QUERIES["select_replay_candidates"],
        {
            "statuses": list(selection.statuses),
            "event_type": selection.event_type,
            "created_after": selection.created_after,
            "created_before": selection.created_before,
            "event_ids": list(selection.event_ids) if selection.event_ids is not None else None,
            "rules_version_before": selection.rules_version_before,
        },
    ).fetchall()
    return [row["id"] for row in rows]


def replay(
    conn: psycopg.Connection[Row], event_ids: Sequence[uuid.UUID], statuses: Sequence[str]
) -> int:
    """Requeue these events for a new run; one that is no longer in ``statuses`` is skipped.

    The status re-check happens in the UPDATE itself, so a replay running
    beside workers can never touch an event that is being processed.
    """
    row = conn.execute(
        QUERIES["replay_events"], {"event_ids": list(event_ids), "statuses": list(statuses)}
    ).fetchone()
    return int(row["requeued"]) if row else 0
