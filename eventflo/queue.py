"""Queue semantics on the events table: claim, complete, fail or retry, rescue, replay.

Every function takes the connection first so the caller owns the transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from eventflo.rules import Classification
from eventflo.sql import QUERIES

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Claimed:
    """An event leased to this worker for one attempt."""

    event_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    attempt: int
    created_at: dt.datetime


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


def claim(
    conn: psycopg.Connection[Row], *, worker_id: str, batch_size: int, lease_seconds: float
) -> list[Claimed]:
    """Lease up to ``batch_size`` due events; the claim commits before any rule runs."""
    rows = conn.execute(
        QUERIES["claim_events"],
        {"worker_id": worker_id, "batch_size": batch_size, "lease_seconds": lease_seconds},
    ).fetchall()
    return [
        Claimed(row["id"], row["event_type"], row["payload"], row["attempts"], row["created_at"])
        for row in rows
    ]


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
) -> tuple[int, int]:
    """Write a batch's outcomes in one transaction; returns (completed, failed-or-retried) counts.

    Each write is fenced on (locked_by, attempts): an event whose lease another
    worker rescued is left alone, so a slow worker can never overwrite it.
    ``backoffs`` pairs with ``failures``.
    """
    completed: list[Row] = []
    erred: list[Row] = []
    with conn.transaction():
        if verdicts:
            completed = conn.execute(
                QUERIES["complete_events"],
                {
                    "worker_id": worker_id,
                    "event_ids": [v.event.event_id for v in verdicts],
                    "attempts": [v.event.attempt for v in verdicts],
                    "severities": [v.classification.severity.value for v in verdicts],
                    "reasons": [v.classification.reason for v in verdicts],
                    "recommendations": [v.classification.recommendation for v in verdicts],
                    "escalates": [v.classification.should_escalate for v in verdicts],
                    "rule_ids": [v.classification.rule_id for v in verdicts],
                },
            ).fetchall()
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
    return len(completed), len(erred)


def _forget_and_notify(conn: psycopg.Connection[Row], *, completed: bool, rows: Sequence[Row]) -> None:
    """Inside the outcome's transaction: drop stale verdicts of failed events, wake long-polls.

    The delete runs only when something failed (rarely), so the hot path never
    touches the results table for it.
    """
    failed = [row["id"] for row in rows if row["status"] == "failed"]
    if failed:
        conn.execute(QUERIES["forget_results"], {"event_ids": failed})
    if completed or failed:
        conn.execute(QUERIES["notify_finished"])


def rescue_expired(
    conn: psycopg.Connection[Row], *, max_attempts: int, limit: int = 1000
) -> list[Row]:
    """Give expired leases back to the queue (or fail them when out of attempts)."""
    with conn.transaction():
        rows = conn.execute(
            QUERIES["rescue_expired"], {"max_attempts": max_attempts, "limit": limit}
        ).fetchall()
        _forget_and_notify(conn, completed=False, rows=rows)
    return rows


@dataclasses.dataclass(frozen=True)
class ReplaySelection:
    """Which events a replay touches. Only finished events can be replayed."""

    statuses: tuple[str, ...] = ("failed",)
    event_type: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    event_ids: tuple[uuid.UUID, ...] | None = None


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
