"""Real deliverers, real signals: a SIGKILL mid-request loses nothing; SIGTERM is clean."""

from __future__ import annotations

import signal
import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import endpoints, events
from tests.e2e.conftest import Children, wait_for
from tests.receiver import Answer, Receiver

CRITICAL = {"amount": 5000}


def start_deliverer(children: Children, *, processes: int = 1):
    args = ["-m", "eventflo", "deliver", "--processes", str(processes)]
    return children.start(
        f"deliverer-{processes}",
        *args,
        env={"EVENTFLO_ALLOW_PRIVATE_ENDPOINTS": "on", "EVENTFLO_DELIVERY_TIMEOUT": "10"},
    )


def _outbox_one(conn, url: str):
    """An endpoint, and one escalated event with its pending delivery (as a worker writes it)."""
    endpoints.create(conn, name="ops", url=url, allow_private=True)
    event_id = events.insert(conn, events.NewEvent("payment_failed", CRITICAL)).event_id
    conn.execute(
        "INSERT INTO deliveries (endpoint_id, event_id, result)"
        ' SELECT id, %s, \'{"severity": "CRITICAL", "classification_reason": "r",'
        ' "recommendation": "m", "should_escalate": true, "rule": "x",'
        ' "rules_version": 1}\' FROM endpoints',
        [event_id],
    )
    conn.execute("NOTIFY eventflo_deliveries")


def _state(conn):
    return conn.execute(
        "SELECT status::text AS status, attempts, locked_by,"
        " (SELECT count(*) FROM delivery_attempts) AS recorded FROM deliveries"
    ).fetchone()


def test_a_deliverer_killed_mid_request_loses_nothing(children, database_url):
    arrived = threading.Event()
    release = threading.Event()

    def hold_the_first(received):
        if not arrived.is_set():
            arrived.set()
            release.wait(30)  # the first request stays unanswered while its sender dies

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        Receiver(on_request=hold_the_first).running() as receiver,
    ):
        _outbox_one(conn, receiver.url)
        first = start_deliverer(children)
        assert arrived.wait(30), "the first deliverer never sent the delivery"
        first.send(signal.SIGKILL)
        first.wait_exit(10)
        release.set()
        state = _state(conn)
        assert (state["status"], state["recorded"]) == ("pending", 0)
        assert state["locked_by"] is not None, "still leased by the dead deliverer"
        # As if the lease had run out (no test waits 50 s for it).
        conn.execute("UPDATE deliveries SET locked_until = now() - interval '1 second'")
        start_deliverer(children)
        wait_for(
            lambda: _state(conn)["status"] == "delivered",
            timeout=30,
            what=lambda: f"the delivery delivered (now {dict(_state(conn))})",
        )
    ids = [got.headers["webhook-id"] for got in receiver.requests]
    assert len(ids) == 2 and len(set(ids)) == 1, "sent twice, under one webhook-id"
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        state = _state(conn)
        assert (state["attempts"], state["recorded"]) == (2, 1)  # the killed one left no row


@pytest.mark.parametrize("processes", [1, 2])
def test_sigterm_finishes_the_request_in_flight_and_exits_0(children, database_url, processes):
    arrived = threading.Event()

    def slow(received):
        arrived.set()

    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        Receiver([Answer(200, delay=1.5)], on_request=slow).running() as receiver,
    ):
        _outbox_one(conn, receiver.url)
        deliverer = start_deliverer(children, processes=processes)
        assert arrived.wait(30), "the delivery was never sent"
        deliverer.send(signal.SIGTERM)
        assert deliverer.wait_exit(30) == 0
        state = _state(conn)
    assert (state["status"], state["recorded"]) == ("delivered", 1)
    assert len(receiver.requests) == 1
