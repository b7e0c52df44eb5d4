"""The outbox: a delivery per matching endpoint, written in the transaction of the verdict."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import endpoints, events, outbox, queue, rules
from tests.integration.worker_harness import closing_worker, poll_until, waits_for_a_lock

CRITICAL = {"amount": 5000}  # payment_failed.large: CRITICAL, escalated
SMALL = {"amount": 10}  # payment_failed.small: HIGH, not escalated


def _endpoint(conn, name="ops", filter=None):
    created = endpoints.create(
        conn, name=name, url=f"http://127.0.0.1:9/{name}", filter=filter, allow_private=True
    )
    return created.endpoint


def _event(conn, payload, event_type="payment_failed", source=None):
    return events.insert(conn, events.NewEvent(event_type, payload, source)).event_id


def _deliveries(conn):
    return conn.execute(
        "SELECT e.name AS endpoint, d.event_id, d.result, d.status::text AS status, d.attempts"
        " FROM deliveries AS d JOIN endpoints AS e ON e.id = d.endpoint_id"
        " ORDER BY e.name, d.id"
    ).fetchall()


def _drain(config):
    with closing_worker(config) as worker:
        while worker.run_once():
            pass


def test_an_escalated_verdict_gets_one_pending_delivery_with_its_result(config, conn):
    _endpoint(conn)
    escalated = _event(conn, CRITICAL)
    _event(conn, SMALL)
    _drain(config)
    (delivery,) = _deliveries(conn)
    stored = conn.execute(
        "SELECT * FROM event_processing_results WHERE event_id = %s", [escalated]
    ).fetchone()
    assert (delivery["endpoint"], delivery["event_id"], delivery["status"]) == (
        "ops",
        escalated,
        "pending",
    )
    assert delivery["attempts"] == 0
    assert delivery["result"] == {
        "severity": "CRITICAL",
        "classification_reason": stored["classification_reason"],
        "recommendation": stored["recommendation"],
        "should_escalate": True,
        "rule": "payment_failed.large",
        "rules_version": 1,
    }


def test_delivery_ids_are_v7_uuids_of_their_time_made_by_the_worker(config, conn):
    """The webhook-id receivers see: unique, and time-based like the column's default."""
    _endpoint(conn)
    for _ in range(3):
        _event(conn, CRITICAL)
    _drain(config)
    rows = conn.execute(
        "SELECT id, (extract(epoch FROM created_at) * 1000)::bigint AS made_ms FROM deliveries"
    ).fetchall()
    assert len({row["id"] for row in rows}) == 3
    for row in rows:
        assert (row["id"].version, row["id"].variant) == (7, uuid.RFC_4122)
        # The first 48 bits are the Unix time in ms: the worker's clock, near the server's.
        assert abs((row["id"].int >> 80) - row["made_ms"]) < 5_000


def test_each_endpoint_gets_what_its_filter_matches(config, conn):
    _endpoint(conn, "everything", filter="true")
    _endpoint(conn, "low", filter='result.severity == "LOW"')
    _endpoint(conn, "big", filter="has(event.payload.amount) && event.payload.amount > 100")
    _endpoint(conn, "billing", filter='event.source == "billing"')
    critical = _event(conn, CRITICAL, source="billing")
    small = _event(conn, SMALL)
    other = _event(conn, {}, event_type="user_signup")
    _drain(config)
    got = {(d["endpoint"], d["event_id"]) for d in _deliveries(conn)}
    assert got == {
        ("everything", critical),
        ("everything", small),
        ("everything", other),
        ("low", other),
        ("big", critical),
        ("billing", critical),
    }


def test_an_endpoint_added_while_a_worker_runs_receives_the_next_claims(config, conn):
    with closing_worker(config) as worker:
        _event(conn, CRITICAL)
        assert worker.run_once() == 1  # no endpoint yet: the worker has read none
        _endpoint(conn)
        after = _event(conn, CRITICAL)
        assert worker.run_once() == 1
        endpoints.disable(conn, "ops", reason="test")
        _event(conn, CRITICAL)
        assert worker.run_once() == 1
    assert [d["event_id"] for d in _deliveries(conn)] == [after]


def test_nothing_is_written_without_endpoints_or_matches(config, conn):
    _event(conn, CRITICAL)
    _drain(config)
    _endpoint(conn, filter="false")
    _event(conn, CRITICAL)
    _drain(config)
    assert _deliveries(conn) == []
    assert (
        conn.execute("SELECT count(*) AS n FROM events WHERE status = 'completed'").fetchone()["n"]
        == 2
    )


def _claim_and_plan(conn, worker_id="worker-a"):
    """Claim as a worker does, judge with the shipped rules, plan the deliveries."""
    claimed = queue.claim(conn, worker_id=worker_id, batch_size=10, lease_seconds=30.0)
    verdicts = [
        queue.Verdict(c, rules.default().classify(c.event_type, c.source, c.payload))
        for c in claimed
    ]
    box = outbox.Outbox(worker_id=worker_id)
    planned = box.plan(box.targets(conn, claimed[0].endpoints_generation), verdicts, 1)
    return verdicts, planned


def _finish(conn, verdicts, planned, worker_id="worker-a"):
    return queue.finish(
        conn,
        worker_id=worker_id,
        verdicts=verdicts,
        failures=[],
        max_attempts=5,
        backoffs=[],
        deliveries=planned,
    )


def test_a_completion_fenced_out_writes_no_delivery(conn):
    _endpoint(conn)
    event_id = _event(conn, CRITICAL)
    verdicts, planned = _claim_and_plan(conn)
    assert len(planned) == 1
    # The lease expired and another worker took the event over.
    conn.execute(
        "UPDATE events SET locked_by = 'worker-b', locked_until = now() + interval '30 s'"
        " WHERE id = %s",
        [event_id],
    )
    assert _finish(conn, verdicts, planned).completed == []
    assert _deliveries(conn) == []


def _all_deliveries(conn) -> int:
    """Every delivery row, whether or not its endpoint still exists."""
    return conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"]


def test_an_endpoint_disabled_or_removed_before_the_insert_gets_no_delivery(conn):
    _endpoint(conn, "ops")
    _endpoint(conn, "chat")
    _event(conn, CRITICAL)
    verdicts, planned = _claim_and_plan(conn)
    assert len(planned) == 2
    endpoints.disable(conn, "ops", reason="test")
    endpoints.remove(conn, "chat")
    assert len(_finish(conn, verdicts, planned).completed) == 1
    assert _all_deliveries(conn) == 0


def test_a_partly_fenced_batch_writes_deliveries_for_the_events_it_held(conn):
    _endpoint(conn)
    held = _event(conn, CRITICAL)
    taken = _event(conn, CRITICAL)
    verdicts, planned = _claim_and_plan(conn)
    assert len(planned) == 2
    conn.execute(
        "UPDATE events SET locked_by = 'worker-b' WHERE id = %s",
        [taken],
    )
    assert _finish(conn, verdicts, planned).completed == [held]
    assert [d["event_id"] for d in _deliveries(conn)] == [held]


@pytest.fixture
def second(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other:
        yield other


@pytest.mark.parametrize("change", ["remove", "disable"])
def test_a_remove_or_disable_waits_for_the_insert_in_flight(conn, second, database_url, change):
    """The insert locks its endpoint till it commits: the change waits, then wins for good."""
    _endpoint(conn)
    _event(conn, CRITICAL)
    verdicts, planned = _claim_and_plan(conn)
    if change == "remove":
        act = functools.partial(endpoints.remove, conn, "ops")
    else:
        act = functools.partial(endpoints.disable, conn, "ops", reason="test")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with second.transaction():  # the outbox insert, its transaction still open
            queue._store_deliveries(second, planned)
            done = pool.submit(act)
            # Seen from a third session: pg_stat_activity holds still inside a transaction.
            with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as third:
                waiting = poll_until(lambda: waits_for_a_lock(third, conn.info.backend_pid), 10)
            assert waiting, f"the {change} did not wait for the insert's lock"
            assert not done.done()
        outcome = done.result(timeout=30)  # the commit released it
    finally:
        pool.shutdown()
    if change == "remove":
        assert outcome == 1, "the removal took the delivery written meanwhile"
        assert _all_deliveries(conn) == 0
    else:
        assert not outcome.enabled
        assert _all_deliveries(conn) == 1  # written before the disable: it waits, pending


@pytest.fixture
def deliveries_refused(conn):
    conn.execute(
        "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'deliveries are refused'; END $$;"
        " CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries"
        " FOR EACH ROW EXECUTE FUNCTION refuse_deliveries()"
    )
    yield
    conn.execute("DROP TRIGGER refuse_deliveries ON deliveries")
    conn.execute("DROP FUNCTION refuse_deliveries()")


def test_a_rolled_back_completion_writes_neither_result_nor_delivery(conn, deliveries_refused):
    _endpoint(conn)
    event_id = _event(conn, CRITICAL)
    verdicts, planned = _claim_and_plan(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="deliveries are refused"):
        _finish(conn, verdicts, planned)
    status = conn.execute("SELECT status FROM events WHERE id = %s", [event_id]).fetchone()
    assert status["status"] == "processing"
    results = conn.execute("SELECT count(*) AS n FROM event_processing_results").fetchone()
    assert results["n"] == 0


def test_a_replayed_event_judged_again_gets_a_new_delivery(config, conn):
    _endpoint(conn)
    event_id = _event(conn, CRITICAL)
    _drain(config)
    queue.replay(conn, [event_id], statuses=["completed"])
    _drain(config)
    assert _all_deliveries(conn) == 2, "one delivery per judgement"


def test_a_filter_failing_on_an_event_skips_that_event_only(config, conn, caplog):
    _endpoint(conn, "big", filter="has(event.payload.n) && event.payload.n > 100")
    text = _event(conn, {"n": "lots"}, event_type="user_signup")
    number = _event(conn, {"n": 500}, event_type="user_signup")
    with caplog.at_level(logging.WARNING, logger="eventflo.outbox"):
        _drain(config)
    assert [d["event_id"] for d in _deliveries(conn)] == [number]
    statuses = conn.execute(
        "SELECT status::text FROM events WHERE id = ANY(%s)", [[text, number]]
    ).fetchall()
    assert {s["status"] for s in statuses} == {"completed"}
    assert "endpoint big: its filter failed on 1 events of a batch" in caplog.text


def test_the_result_json_names_fields_as_the_api_does(make_app, config, conn):
    _endpoint(conn)
    event_id = _event(conn, CRITICAL)
    _drain(config)
    api = make_app().test_client().get(f"/events/{event_id}").get_json()["result"]
    (delivery,) = _deliveries(conn)
    assert delivery["result"] == {key: api[key] for key in delivery["result"]}


def test_get_event_shows_its_deliveries(make_app, config, conn):
    client = make_app().test_client()
    _endpoint(conn, "ops")
    _endpoint(conn, "chat", filter="true")
    event_id = _event(conn, CRITICAL)
    assert client.get(f"/events/{event_id}").get_json()["deliveries"] == []
    _drain(config)
    shown = client.get(f"/events/{event_id}").get_json()["deliveries"]
    assert sorted(
        (d["endpoint"], d["status"], d["attempts"], d["last_status_code"]) for d in shown
    ) == [("chat", "pending", 0, None), ("ops", "pending", 0, None)]
    stored = conn.execute("SELECT id FROM deliveries ORDER BY id").fetchall()
    assert [d["delivery_id"] for d in shown] == [str(row["id"]) for row in stored]
    assert all(d["created_at"] and d["delivered_at"] is None for d in shown)


def test_the_openapi_document_describes_an_events_deliveries(make_app):
    spec = make_app().test_client().get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    event = schemas["Event"]["properties"]["deliveries"]
    assert event["items"]["$ref"].endswith("/DeliverySummary")
    assert {"delivery_id", "endpoint", "status", "attempts", "last_status_code"} <= schemas[
        "DeliverySummary"
    ]["properties"].keys()
