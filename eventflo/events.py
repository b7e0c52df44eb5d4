"""The event store: insert (idempotent), get and list. The queue semantics live in ``queue.py``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eventflo.errors import IdempotencyConflict
from eventflo.sql import QUERIES
from eventflo.status import FINISHED as FINISHED
from eventflo.status import Status

Row = dict[str, Any]

# The lifecycle in its order, as filters offer it and counts list it.
STATUSES: tuple[Status, ...] = tuple(Status)


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event as a client submits it."""

    event_type: str
    payload: dict[str, Any]
    source: str | None = None
    idempotency_key: str | None = None

    def fingerprint(self) -> str:
        """What a retry with the same idempotency key must repeat exactly."""
        canonical = json.dumps(
            {"event_type": self.event_type, "source": self.source, "payload": self.payload},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Accepted:
    """The answer to a submission: the event, and whether this request created it."""

    event_id: uuid.UUID
    status: Status
    created: bool


def insert(conn: psycopg.Connection[Row], event: NewEvent) -> Accepted:
    """Store one queued event, or return the one its idempotency key already names."""
    return insert_many(conn, [event])[0]


def insert_many(conn: psycopg.Connection[Row], batch: Sequence[NewEvent]) -> list[Accepted]:
    """Store a batch in one transaction and one statement (so one NOTIFY); answers in request order.

    An event whose idempotency key exists is not stored again: its answer is
    the original event, provided the request matches the one the key was
    first used with; otherwise IdempotencyConflict, and nothing is stored.
    ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to
    commit, so the follow-up read always finds the winner's row.
    """
    fingerprints = [event.fingerprint() if event.idempotency_key else None for event in batch]
    # Only a key can make a stored batch conflict (and need undoing); without
    # one, the single INSERT is atomic on its own, and BEGIN and COMMIT would
    # be two more round trips on every request.
    keyed = any(fingerprints)
    with conn.transaction() if keyed else contextlib.nullcontext():
        rows = conn.execute(
            QUERIES["insert_events"],
            {
                "event_types": [event.event_type for event in batch],
                "sources": [event.source for event in batch],
                "payloads": [Jsonb(event.payload) for event in batch],
                "idempotency_keys": [event.idempotency_key for event in batch],
                "request_fingerprints": fingerprints,
            },
        ).fetchall()
        skipped = {batch[i].idempotency_key for i, row in enumerate(rows) if row["id"] is None}
        originals = {}
        if skipped:
            originals = {
                row["idempotency_key"]: row
                for row in conn.execute(
                    QUERIES["get_events_by_idempotency_keys"], {"idempotency_keys": list(skipped)}
                )
            }
        answers = []
        for event, fingerprint, row in zip(batch, fingerprints, rows, strict=True):
            if row["id"] is not None:
                answers.append(Accepted(row["id"], Status(row["status"]), created=True))
                continue
            original = originals.get(event.idempotency_key)
            if original is None:  # the winner of a race was deleted (purged) before we read it
                raise IdempotencyConflict(
                    f"Idempotency-Key {event.idempotency_key!r} changed hands meanwhile; retry."
                )
            if original["request_fingerprint"] != fingerprint:
                raise IdempotencyConflict(
                    f"Idempotency-Key {event.idempotency_key!r} was first used with a different "
                    f"request (event {original['id']}); use a new key for a new event."
                )
            answers.append(Accepted(original["id"], Status(original["status"]), created=False))
    return answers


def read_one_snapshot(conn: psycopg.Connection[Row]) -> None:
    """First statement inside ``conn.transaction()``: every read that follows sees one snapshot."""
    conn.execute(QUERIES["read_only_snapshot"])


def get(conn: psycopg.Connection[Row], event_id: uuid.UUID) -> Row | None:
    """The event with its result (while completed), its attempt history and deliveries, or None.

    The reads share one snapshot, so the history never disagrees with the status.
    """
    with conn.transaction():
        read_one_snapshot(conn)
        row = conn.execute(QUERIES["get_event"], {"event_id": event_id}).fetchone()
        if row is None:
            return None
        history = conn.execute(QUERIES["list_event_attempts"], {"event_id": event_id}).fetchall()
        deliveries = conn.execute(
            QUERIES["list_event_deliveries"], {"event_id": event_id}
        ).fetchall()
    result = None
    if row["severity"] is not None:
        result = {
            "severity": row["severity"],
            "classification_reason": row["classification_reason"],
            "recommendation": row["recommendation"],
            "should_escalate": row["should_escalate"],
            "rule": row["rule_id"],
            "rules_version": row["rules_version"],
            "processed_at": row["processed_at"],
        }
    return {
        "event_id": row["id"],
        "event_type": row["event_type"],
        "source": row["source"],
        "status": row["status"],
        "payload": row["payload"],
        "attempts": row["attempts"],
        "error_message": row["error_message"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": row["started_at"],
        "completed_at": row["completed_at"],
        "result": result,
        "history": history,
        "deliveries": deliveries,
    }


def get_status(conn: psycopg.Connection[Row], event_id: uuid.UUID) -> Status | None:
    """Only the status: the cheap read a long-poll repeats."""
    row = conn.execute(QUERIES["get_event_status"], {"event_id": event_id}).fetchone()
    return None if row is None else Status(row["status"])


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where a page ends: the id of its last row (ids order events by insert time)."""

    event_id: uuid.UUID


def list_recent(
    conn: psycopg.Connection[Row],
    *,
    limit: int,
    status: Status | None = None,
    event_type: str | None = None,
    after: Cursor | None = None,
) -> list[Row]:
    """Newest first, filtered, starting after the cursor."""
    rows = conn.execute(
        QUERIES["list_events"],
        {
            "limit": limit,
            "status": status,
            "event_type": event_type,
            "after_id": after.event_id if after else None,
        },
    ).fetchall()
    return [
        {
            "event_id": row["id"],
            "event_type": row["event_type"],
            "status": row["status"],
            "created_at": row["created_at"],
        }
        for row in rows
    ]
