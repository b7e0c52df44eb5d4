"""Chaos for the outbox: deliverer processes SIGKILLed at random while deliveries keep coming.

For ``CHAOS_SECONDS`` (or until it is done) a producer writes pending deliveries to four endpoints
(as workers do, a few every tenth of a second), three deliverers send them to
a real receiver that takes a while to answer, and a driver SIGKILLs a random
deliverer every fraction of a second and starts another. Then the kills stop
and the leases of the dead run out for real (2 × the delivery timeout + 30 s).

What a receiver must be able to count on: every delivery arrives; a delivery
that arrived twice was in flight when its sender died, and carries the same
``webhook-id`` and the same signed body both times; nothing arrives that was
not written. At most a killed deliverer's requests in flight arrive twice.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from standardwebhooks import Webhook

from eventflo import endpoints, events
from tests.e2e.conftest import Child, Children, wait_for
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.e2e

CHAOS_SECONDS = 15.0
DELIVERERS = 3
CONCURRENCY = 4  # per deliverer: at most this many requests die with it
ENDPOINTS = 4
RESULT = {
    "severity": "CRITICAL",
    "classification_reason": "chaos",
    "recommendation": "page someone",
    "should_escalate": True,
    "rule": "chaos",
    "rules_version": 1,
}


def start_deliverer(children: Children, number: int) -> Child:
    return children.start(
        f"deliverer-{number}",
        "-m",
        "eventflo",
        "deliver",
        env={
            "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS": "on",
            "EVENTFLO_DELIVERY_TIMEOUT": "2",  # a lease of 2 × 2 + 30 s
            "EVENTFLO_DELIVERY_CONCURRENCY": str(CONCURRENCY),
        },
    )


def produce(database_url: str, stop: threading.Event, event_ids: list[Any]) -> None:
    """Three events' deliveries (one per endpoint) every tenth of a second, as workers write."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not stop.wait(0.1):
            batch = event_ids[:3]
            del event_ids[:3]
            if not batch:
                return
            conn.execute(
                "INSERT INTO deliveries (endpoint_id, event_id, result)"
                " SELECT e.id, x.event_id, %s FROM endpoints AS e,"
                " unnest(%s::uuid[]) AS x (event_id)",
                [json.dumps(RESULT), batch],
            )
            conn.execute("NOTIFY eventflo_deliveries")


def delivery_counts(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, int]:
    rows = conn.execute("SELECT status::text AS status, count(*) AS n FROM deliveries GROUP BY 1")
    return {row["status"]: row["n"] for row in rows}


def test_random_deliverer_kills_lose_nothing_and_duplicates_share_their_webhook_id(
    children: Children, database_url: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    # A slow receiver: a kill finds requests in flight more often than not.
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn,
        Receiver([Answer(204, body=b"", delay=0.05)]).running() as receiver,
    ):
        secrets = {}
        for number in range(ENDPOINTS):
            created = endpoints.create(
                conn, name=f"ops-{number}", url=f"{receiver.url}/{number}", allow_private=True
            )
            secrets[f"/{number}"] = created.secret
        event_ids = [
            events.insert(conn, events.NewEvent("payment_failed", {"amount": 5000})).event_id
            for _ in range(int(CHAOS_SECONDS * 10 * 3))
        ]
        stop = threading.Event()
        producer = threading.Thread(
            target=produce, args=(database_url, stop, list(event_ids)), daemon=True
        )
        deliverers = [start_deliverer(children, number) for number in range(DELIVERERS)]
        producer.start()
        kills = 0
        deadline = time.monotonic() + CHAOS_SECONDS
        try:
            while time.monotonic() < deadline or producer.is_alive():
                time.sleep(rng.uniform(0.3, 1.0))
                index = rng.randrange(DELIVERERS)
                deliverers[index].send(signal.SIGKILL)
                deliverers[index].wait_exit(10)
                kills += 1
                deliverers[index] = start_deliverer(children, DELIVERERS + kills)
        finally:
            stop.set()  # only when the driver failed: the producer has finished
            producer.join(10)
        written = ENDPOINTS * len(event_ids)
        assert sum(delivery_counts(conn).values()) == written, "the producer wrote everything"
        assert kills >= 10 and len(receiver.requests) > 0
        # The dead deliverers' leases run out (about 34 s after their last claim): all arrive.
        wait_for(
            lambda: delivery_counts(conn) == {"delivered": written},
            timeout=90,
            what=lambda: f"every delivery delivered (now {delivery_counts(conn)}, seed {seed})",
        )

        stored = {
            str(row["id"]): f"/{row['name'].removeprefix('ops-')}"
            for row in conn.execute(
                "SELECT d.id, e.name FROM deliveries AS d"
                " JOIN endpoints AS e ON e.id = d.endpoint_id"
            )
        }

    arrivals: dict[str, list[Any]] = collections.defaultdict(list)
    for got in receiver.requests:
        # Every request is signed for its endpoint, over its own webhook-id.
        Webhook(secrets[got.path]).verify(got.body, got.headers)
        arrivals[got.headers["webhook-id"]].append(got)
    assert set(arrivals) == set(stored), "every delivery arrived, and nothing else did"
    for delivery_id, copies in arrivals.items():
        assert {got.path for got in copies} == {stored[delivery_id]}, "to its own endpoint"
        assert len({got.body for got in copies}) == 1, "a duplicate is the same message"
    twice = sum(1 for copies in arrivals.values() if len(copies) > 1)
    print(f"{kills} kills, {written} deliveries, {twice} arrived more than once")
    assert twice >= 1, f"no kill found a request in flight: nothing was tested (seed {seed})"
    assert twice <= kills * CONCURRENCY, "only requests in flight at a kill arrive twice"
