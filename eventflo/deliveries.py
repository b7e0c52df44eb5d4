"""Deliveries as operators see and replay them (`eventflo deliveries`).

A replay puts a delivery back to ``pending``, due now, in a new run (its
attempts start again at 0, its past attempts stay in ``delivery_attempts``)
under the same id: a receiver sees the same ``webhook-id`` again, which is
what lets it recognise a message it already handled.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg

from eventflo import errors, sql

QUERIES = sql.load("deliveries.sql")

STATUSES = ("pending", "delivered", "failed")

Row = dict[str, Any]


def list_deliveries(
    conn: psycopg.Connection[Row],
    *,
    endpoint: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Row]:
    """The newest deliveries, of one endpoint and one status when given."""
    params = {"endpoint": endpoint, "status": status, "limit": limit}
    return list(conn.execute(QUERIES["list_deliveries"], params))


def replay_one(conn: psycopg.Connection[Row], delivery_id: uuid.UUID) -> None:
    """Send this delivery again, whatever its status (not while an attempt holds it)."""
    if conn.execute(QUERIES["replay_delivery"], {"id": delivery_id}).fetchone() is not None:
        return
    if conn.execute(QUERIES["delivery_exists"], {"id": delivery_id}).fetchone() is None:
        raise errors.DeliveryNotFound(f"no delivery has the id {delivery_id}")
    raise errors.DeliveryBusy(
        f"delivery {delivery_id} is being sent right now; replay it once that attempt ends"
    )


def replay_failed_by_id(conn: psycopg.Connection[Row], delivery_ids: list[uuid.UUID]) -> int:
    """Send these deliveries again where they are still failed; how many were requeued."""
    params = {"ids": delivery_ids}
    return len(conn.execute(QUERIES["replay_failed_deliveries_by_id"], params).fetchall())


def count_failed(conn: psycopg.Connection[Row], endpoint: str, since: dt.datetime | None) -> int:
    row = conn.execute(
        QUERIES["count_failed_deliveries"], {"endpoint": endpoint, "since": since}
    ).fetchone()
    return 0 if row is None else int(row["deliveries"])


def replay_failed(conn: psycopg.Connection[Row], endpoint: str, since: dt.datetime | None) -> int:
    """Send an endpoint's failed deliveries again; how many were requeued."""
    params = {"endpoint": endpoint, "since": since}
    return len(conn.execute(QUERIES["replay_failed_deliveries"], params).fetchall())
