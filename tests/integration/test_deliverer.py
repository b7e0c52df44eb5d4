"""The deliverer against real HTTP receivers on loopback: what arrives, and what is recorded."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading

import psycopg
import pytest
from psycopg.rows import dict_row
from standardwebhooks import Webhook

from eventflo import deliverer as deliverer_module
from eventflo import endpoints, events, sender
from eventflo.deliverer import Deliverer
from tests.integration.worker_harness import closing_worker, poll_until
from tests.receiver import Answer, Receiver

CRITICAL = {"amount": 5000}  # payment_failed.large: CRITICAL, escalated


@pytest.fixture
def settings(config):
    """Private endpoints allowed (the receivers are on loopback); retries at once."""
    return dataclasses.replace(
        config,
        allow_private_endpoints=True,
        delivery_retry_schedule=(0.0, 0.0, 0.0),
        delivery_timeout=1.0,
    )


def _judged(settings, conn, payload=CRITICAL, event_type="payment_failed", source="billing"):
    """One event, judged by a worker (so its deliveries are in the outbox); its id."""
    event_id = events.insert(conn, events.NewEvent(event_type, payload, source)).event_id
    with closing_worker(settings) as worker:
        assert worker.run_once() == 1
    return event_id


@contextlib.contextmanager
def _deliverer(settings, **kwargs):
    deliverer = Deliverer(settings, **kwargs)
    try:
        yield deliverer
    finally:
        deliverer.close()


def _delivery(conn):
    return conn.execute(
        "SELECT d.*, d.status::text AS state FROM deliveries AS d ORDER BY d.id"
    ).fetchone()


def _attempts(conn):
    return conn.execute(
        "SELECT attempt, status_code, response_body, error FROM delivery_attempts ORDER BY id"
    ).fetchall()


def _endpoint(conn, name="ops"):
    return conn.execute("SELECT * FROM endpoints WHERE name = %s", [name]).fetchone()


def _time_passes(conn):
    """As if the retry delays and the endpoint's pause were over (no test sleeps for them)."""
    conn.execute("UPDATE deliveries SET run_at = now() WHERE status = 'pending'")
    conn.execute("UPDATE endpoints SET paused_until = NULL")


def test_a_standard_delivery_arrives_signed_and_is_recorded(settings, conn):
    with Receiver([Answer(200, body=b"thanks")]).running() as receiver:
        created = endpoints.create(conn, name="ops", url=receiver.url + "/hook", allow_private=True)
        event_id = _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            assert deliverer.run_once() == 1
    (got,) = receiver.requests
    body = Webhook(created.secret).verify(got.body, got.headers)
    delivery = _delivery(conn)
    assert got.headers["webhook-id"] == str(delivery["id"])
    assert body["type"] == "event.judged"
    assert body["data"]["event"]["event_id"] == str(event_id)
    assert body["data"]["event"]["payload"] == CRITICAL
    assert body["data"]["result"]["severity"] == "CRITICAL"
    assert (delivery["state"], delivery["attempts"], delivery["last_status_code"]) == (
        "delivered",
        1,
        200,
    )
    assert delivery["delivered_at"] is not None and delivery["locked_by"] is None
    assert [tuple(a.values()) for a in _attempts(conn)] == [(1, 200, "thanks", None)]
    assert _endpoint(conn)["last_success_at"] is not None


def test_a_500_is_retried_with_the_same_webhook_id_until_it_succeeds(settings, conn):
    with Receiver([Answer(500, body=b"oops"), Answer(200)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            assert deliverer.run_once() == 1
            first = _delivery(conn)
            assert (first["state"], first["last_status_code"]) == ("pending", 500)
            health = _endpoint(conn)
            assert health["failure_streak"] == 1 and health["failing_since"] is not None
            assert health["paused_until"] is not None
            _time_passes(conn)
            assert deliverer.run_once() == 1
    ids = {got.headers["webhook-id"] for got in receiver.requests}
    assert len(receiver.requests) == 2 and len(ids) == 1
    assert _delivery(conn)["state"] == "delivered"
    assert [(a["attempt"], a["status_code"]) for a in _attempts(conn)] == [(1, 500), (2, 200)]
    health = _endpoint(conn)
    assert (health["failure_streak"], health["failing_since"]) == (0, None)


def test_after_the_last_attempt_of_the_schedule_the_delivery_fails_and_is_kept(settings, conn):
    with Receiver([Answer(503)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            for _ in range(3):
                assert deliverer.run_once() == 1
                _time_passes(conn)
            assert deliverer.run_once() == 0
    delivery = _delivery(conn)
    assert (delivery["state"], delivery["attempts"]) == ("failed", 3)
    assert len(receiver.requests) == 3


def test_a_410_fails_the_delivery_and_disables_the_endpoint(settings, conn):
    with Receiver([Answer(410)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            assert deliverer.run_once() == 1
    assert _delivery(conn)["state"] == "failed"
    endpoint = _endpoint(conn)
    assert not endpoint["enabled"]
    assert endpoint["disabled_reason"] == "the endpoint answered 410 Gone"


def test_a_429_waits_for_its_retry_after_and_pauses_the_endpoint(settings, conn):
    with Receiver([Answer(429, headers={"retry-after": "120"})]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            assert deliverer.run_once() == 1
            assert deliverer.run_once() == 0  # not due, and the endpoint is paused
    row = conn.execute(
        "SELECT extract(epoch FROM d.run_at - now()) AS due_in,"
        " extract(epoch FROM e.paused_until - now()) AS paused_for"
        " FROM deliveries AS d JOIN endpoints AS e ON e.id = d.endpoint_id"
    ).fetchone()
    assert 100 < row["due_in"] <= 120 and 100 < row["paused_for"] <= 120


def test_a_redirect_and_a_timeout_are_failed_attempts(settings, conn):
    script = [Answer(302, headers={"location": "http://127.0.0.1:9/"}), Answer(200, delay=2.0)]
    with Receiver(script).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            deliverer.run_once()
            deliverer.run_once()  # a 302 is the message's fault, not the endpoint's: no pause
    redirect, timeout = _attempts(conn)
    assert (redirect["status_code"], redirect["error"]) == (302, None)
    assert timeout["status_code"] is None and timeout["error"].startswith("timed out")
    assert _delivery(conn)["state"] == "pending"


def test_during_a_rotation_both_secrets_verify(settings, conn):
    with Receiver().running() as receiver:
        old = endpoints.create(conn, name="ops", url=receiver.url, allow_private=True).secret
        new, _ = endpoints.rotate_secret(conn, "ops")
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            deliverer.run_once()
    (got,) = receiver.requests
    for secret in (old, new):
        Webhook(secret).verify(got.body, got.headers)


def test_slack_and_pagerduty_receive_their_own_shapes(settings, conn):
    with Receiver().running() as slack, Receiver().running() as pagerduty:
        endpoints.create(conn, name="chat", url=slack.url, format="slack", allow_private=True)
        endpoints.create(
            conn,
            name="oncall",
            url=pagerduty.url,
            format="pagerduty",
            routing_key="R0123456789abcdef",
            allow_private=True,
        )
        event_id = _judged(dataclasses.replace(settings, public_url="https://ef.example"), conn)
        with _deliverer(dataclasses.replace(settings, public_url="https://ef.example")) as d:
            assert d.run_once() == 2
    message = json.loads(slack.requests[0].body)
    assert message["text"].startswith("CRITICAL (escalated): payment_failed: ")
    assert (
        f"<https://ef.example/events/{event_id}|{event_id}>"
        in (message["blocks"][2]["elements"][0]["text"])
    )
    trigger = json.loads(pagerduty.requests[0].body)
    assert (trigger["routing_key"], trigger["event_action"], trigger["dedup_key"]) == (
        "R0123456789abcdef",
        "trigger",
        str(event_id),
    )
    assert (trigger["payload"]["severity"], trigger["payload"]["source"]) == ("critical", "billing")
    assert trigger["links"] == [
        {"href": f"https://ef.example/events/{event_id}", "text": "The event in EventFlo"}
    ]


def test_an_address_that_turned_private_is_refused_at_send_time(settings, conn):
    """DNS rebinding: the endpoint was public when added; now its name points at loopback."""
    with Receiver().running() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        conn.execute(
            "INSERT INTO endpoints (name, url, format, secret) VALUES ('ops', %s, 'standard', %s)",
            [f"https://hooks.example.com:{port}/", endpoints.new_secret()],
        )
        _judged(settings, conn)
        strict = dataclasses.replace(settings, allow_private_endpoints=False)
        rebinding = sender.Sender(
            timeout_seconds=1.0, allow_private=False, resolver=lambda host, port: ["127.0.0.1"]
        )
        with _deliverer(strict, sender=rebinding) as deliverer:
            assert deliverer.run_once() == 1
    assert receiver.requests == []
    (attempt,) = _attempts(conn)
    assert "127.0.0.1, a loopback address" in attempt["error"]


def test_an_endpoint_failing_too_long_is_disabled(settings, conn):
    with Receiver([Answer(500)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        conn.execute("UPDATE endpoints SET failing_since = now() - interval '6 days'")
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            deliverer.run_once()
    endpoint = _endpoint(conn)
    assert not endpoint["enabled"]
    assert endpoint["disabled_reason"].startswith("failed every attempt since ")


def test_a_running_deliverer_wakes_on_notify_and_stops_cleanly(settings, conn):
    with Receiver().running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        slow_poll = dataclasses.replace(settings, poll_interval=3600.0)  # only NOTIFY wakes it
        stop = threading.Event()
        deliverer = Deliverer(slow_poll, stop=stop)
        thread = threading.Thread(target=deliverer.run)
        thread.start()
        try:
            # Idle, waiting on LISTEN: from here only a NOTIFY (or an hour) makes it look.
            assert deliverer.waiting.wait(10)
            _judged(settings, conn)
            assert poll_until(lambda: receiver.requests, 10), "the NOTIFY did not wake it"
        finally:
            stop.set()
            thread.join(30)
    assert not thread.is_alive()
    assert poll_until(lambda: _delivery(conn)["state"] == "delivered", 10)


def test_a_rejected_message_does_not_pause_a_healthy_endpoint(settings, conn):
    with Receiver([Answer(400, body=b"bad field")]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(settings, conn)
        with _deliverer(settings) as deliverer:
            assert deliverer.run_once() == 1
    endpoint = _endpoint(conn)
    assert endpoint["paused_until"] is None  # its other deliveries go on
    assert endpoint["failure_streak"] == 1  # but it counts towards being disabled
    assert _delivery(conn)["state"] == "pending"


def test_a_healthy_endpoints_row_is_written_once_a_second_not_every_round(
    settings, conn, monkeypatch
):
    """Its last success is kept to the second; a success after failures is written at once."""
    # "A second" made an hour: however slow the machine, the rounds below fall within it.
    monkeypatch.setattr(deliverer_module, "SUCCESS_WRITE_SECONDS", 3600.0)
    with Receiver([Answer(200)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        with _deliverer(settings) as deliverer:
            _judged(settings, conn)
            assert deliverer.run_once() == 1
            first = _endpoint(conn)
            assert first["last_success_at"] is not None
            _judged(settings, conn)
            assert deliverer.run_once() == 1  # within the window: the row is left alone
            assert _endpoint(conn)["last_success_at"] == first["last_success_at"]
            # Another deliverer saw it fail meanwhile: the next success clears that at once.
            conn.execute(
                "UPDATE endpoints SET failure_streak = 3, failing_since = now() - interval '1 h'"
            )
            _judged(settings, conn)
            assert deliverer.run_once() == 1
            cleared = _endpoint(conn)
            assert (cleared["failure_streak"], cleared["failing_since"]) == (0, None)
            assert cleared["last_success_at"] > first["last_success_at"]
    delivered = conn.execute("SELECT count(*) AS n FROM deliveries WHERE status = 'delivered'")
    assert delivered.fetchone()["n"] == 3


def test_a_success_clears_failures_recorded_while_it_was_in_flight(
    settings, conn, database_url, monkeypatch
):
    """Another deliverer saw the endpoint fail after this attempt was claimed: still cleared."""
    monkeypatch.setattr(deliverer_module, "SUCCESS_WRITE_SECONDS", 3600.0)
    in_flight = threading.Event()

    def another_deliverer_fails_it(received):
        if in_flight.is_set():
            with psycopg.connect(database_url, autocommit=True) as other:
                other.execute(
                    "UPDATE endpoints SET failure_streak = 2, failing_since = now(),"
                    " paused_until = now() + interval '5 minutes'"
                )

    with Receiver([Answer(200)], on_request=another_deliverer_fails_it).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        with _deliverer(settings) as deliverer:
            _judged(settings, conn)
            assert deliverer.run_once() == 1  # healthy, and its last success just written
            _judged(settings, conn)
            in_flight.set()  # the next request: the failures land while it is being sent
            assert deliverer.run_once() == 1
    endpoint = _endpoint(conn)
    assert (endpoint["failure_streak"], endpoint["paused_until"]) == (0, None)


def test_a_failing_endpoint_is_paused_as_a_whole(settings, conn):
    schedule = dataclasses.replace(settings, delivery_retry_schedule=(0.0, 60.0, 60.0))
    with Receiver([Answer(500)]).running() as receiver:
        endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
        _judged(schedule, conn)
        _judged(schedule, conn)
        with _deliverer(schedule) as deliverer:
            assert deliverer.run_once() == 2  # healthy so far: both go
            assert deliverer.run_once() == 0  # paused: neither goes, the second is not probed
    paused = conn.execute(
        "SELECT extract(epoch FROM paused_until - now()) AS s FROM endpoints"
    ).fetchone()["s"]
    assert 50 < paused <= 60
    assert len(receiver.requests) == 2


def test_an_endpoint_removed_during_a_request_is_no_error(settings, conn, database_url):
    """A 410 for an endpoint removed meanwhile: nothing to record, nothing to disable."""
    other = psycopg.connect(database_url, autocommit=True, row_factory=dict_row)

    def remove(_received):
        endpoints.remove(other, "ops")

    try:
        with Receiver([Answer(410)], on_request=remove).running() as receiver:
            endpoints.create(conn, name="ops", url=receiver.url, allow_private=True)
            _judged(settings, conn)
            with _deliverer(settings) as deliverer:
                assert deliverer.run_once() == 1
    finally:
        other.close()
    assert conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM endpoints").fetchone()["n"] == 0
