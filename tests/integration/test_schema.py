"""PostgreSQL itself guards the data: constraints reject what the code must never write."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.types.json import Jsonb


def _insert(conn, **columns):
    columns.setdefault("event_type", "payment_failed")
    names = ", ".join(columns)
    marks = ", ".join(f"%({name})s" for name in columns)
    return conn.execute(
        f"INSERT INTO events ({names}) VALUES ({marks}) RETURNING *", columns
    ).fetchone()


def test_defaults_make_a_queued_event_with_a_time_ordered_uuid(conn):
    first = _insert(conn)
    second = _insert(conn)
    assert first["status"] == "queued" and first["attempts"] == 0
    assert first["payload"] == {}
    assert uuid.UUID(str(first["id"])).version == 7
    assert str(first["id"]) < str(second["id"])


@pytest.mark.parametrize(
    ("columns", "constraint"),
    [
        ({"event_type": "Payment Failed"}, "events_event_type_format"),
        ({"event_type": ""}, "events_event_type_format"),
        ({"payload": Jsonb([1, 2])}, "events_payload_is_object"),
        ({"source": "s" * 201}, "events_source_length"),
        ({"idempotency_key": "", "request_fingerprint": "f"}, "events_idempotency_key_length"),
        ({"status": "processing"}, "events_processing_has_lease"),
        ({"locked_by": "w1", "locked_until": "2030-01-01"}, "events_processing_has_lease"),
        ({"status": "failed"}, "events_failed_has_error"),
        ({"status": "completed"}, "events_completed_has_completed_at"),
        ({"idempotency_key": "k"}, "events_idempotency_has_fingerprint"),
        ({"attempts": -1}, "events_attempts_not_negative"),
    ],
)
def test_check_constraints(conn, columns, constraint):
    with pytest.raises(psycopg.errors.CheckViolation) as excinfo:
        _insert(conn, **columns)
    assert excinfo.value.diag.constraint_name == constraint


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("event_type", "Payment Failed", "events_event_type_format"),
        ("source", "", "events_source_length"),
        ("payload", Jsonb("text"), "events_payload_is_object"),
        ("idempotency_key", "k" * 256, "events_idempotency_key_length"),
    ],
)
def test_checks_on_written_once_columns_also_hold_for_updates(conn, column, value, constraint):
    # These checks live on domains (cheaper for the queue's own updates,
    # which never set these columns); an UPDATE that does set one is checked.
    event = _insert(conn, idempotency_key="k", request_fingerprint="f")
    with pytest.raises(psycopg.errors.CheckViolation) as excinfo:
        conn.execute(f"UPDATE events SET {column} = %s WHERE id = %s", [value, event["id"]])
    assert excinfo.value.diag.constraint_name == constraint


def test_one_event_per_idempotency_key(conn):
    _insert(conn, idempotency_key="k1", request_fingerprint="f")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(conn, idempotency_key="k1", request_fingerprint="f")


def test_at_most_one_result_per_event_and_results_go_with_their_event(conn):
    event = _insert(conn)
    result = (
        "INSERT INTO event_processing_results"
        " (event_id, severity, classification_reason, recommendation, should_escalate, rule_id)"
        " VALUES (%s, 'HIGH', 'r', 'x', false, 'rule')"
    )
    conn.execute(result, [event["id"]])
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(result, [event["id"]])
    conn.execute("DELETE FROM events WHERE id = %s", [event["id"]])
    assert conn.execute("SELECT count(*) AS n FROM event_processing_results").fetchone()["n"] == 0


def test_the_wake_up_trigger_fires_once_per_statement_not_per_row(conn):
    # PostgreSQL folds identical notifications of one transaction, so counting
    # deliveries cannot tell a per-row trigger from a per-statement one; a
    # per-row trigger would still pay the notify queue's lock for every row.
    trigger = conn.execute(
        "SELECT tgtype, tgenabled FROM pg_trigger WHERE tgname = 'events_notify_queued'"
    ).fetchone()
    row_level_bit = 1  # TRIGGER_TYPE_ROW in PostgreSQL's pg_trigger.h
    assert trigger["tgtype"] & row_level_bit == 0
    assert trigger["tgenabled"] == "O"


def test_one_notify_per_inserting_statement(database_url, conn):
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN eventflo_queued")
        conn.execute(
            "INSERT INTO events (event_type) SELECT 'bulk_test' FROM generate_series(1, 500)"
        )
        received = list(listener.notifies(timeout=2.0))
    # PostgreSQL folds identical notifications of one transaction; a per-row
    # trigger would still pay the queue lock 500 times. The statement trigger
    # fires once, and one wake-up arrives.
    assert len(received) == 1
    assert received[0].channel == "eventflo_queued"
