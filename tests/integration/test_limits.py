"""Limits and timeouts of the API: each configurable, each a clear answer when reached.

Body size, nesting depth, the list and wait caps are in test_api.py; here are
the key count, the cap on concurrent long-polls, and the database timeouts
of the app's own connections (statement, idle in transaction, pool wait).
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import psycopg
import pytest

from eventflo import appstate
from eventflo.config import Config, ConfigError
from eventflo.worker import Worker

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def count_events(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) AS n FROM events").fetchone()["n"]


def payload_of(keys: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(keys)}


# -- EVENTFLO_MAX_JSON_KEYS ----------------------------------------------


def test_an_event_with_more_keys_than_the_limit_is_a_422_naming_it(make_app, conn):
    client = make_app(max_json_keys=10).test_client()
    # event_type and payload are two keys; eight more in the payload make ten.
    at_limit = client.post("/events", json={"event_type": "x", "payload": payload_of(8)})
    assert at_limit.status_code == 202, at_limit.get_data(as_text=True)

    over = client.post("/events", json={"event_type": "x", "payload": payload_of(9)})
    body = assert_problem(over, 422)
    assert "more than 10 object keys" in body["detail"]
    assert "EVENTFLO_MAX_JSON_KEYS" in body["detail"]
    assert count_events(conn) == 1


def test_keys_of_nested_objects_count_too(make_app):
    client = make_app(max_json_keys=10).test_client()
    nested = {"a": [{"b": 1, "c": 2}, {"d": {"e": 1, "f": 2, "g": 3, "h": 4}}]}  # 8 keys
    assert client.post("/events", json={"event_type": "x", "payload": nested}).status_code == 202
    nested["a"][0]["i"] = 3  # the eleventh key, in an object inside a list
    assert client.post("/events", json={"event_type": "x", "payload": nested}).status_code == 422


def test_each_event_of_a_batch_is_counted_on_its_own(make_app, conn):
    client = make_app(max_json_keys=10).test_client()
    item = {"event_type": "x", "payload": payload_of(8)}
    accepted = client.post("/events/batch", json={"events": [item] * 50})
    assert accepted.status_code == 202, accepted.get_data(as_text=True)

    over = {"event_type": "x", "payload": payload_of(9)}
    body = assert_problem(client.post("/events/batch", json={"events": [item, over]}), 422)
    assert "events.1" in body["detail"]
    assert count_events(conn) == 50


def test_the_default_key_limit_is_a_thousand(client):
    for keys, status in [(998, 202), (999, 422)]:
        response = client.post("/events", json={"event_type": "x", "payload": payload_of(keys)})
        assert response.status_code == status


# -- EVENTFLO_MAX_LONG_POLLS ---------------------------------------------


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_long_polls_beyond_the_cap_are_503_at_once_and_the_waiters_are_unharmed(make_app, config):
    app = make_app(max_long_polls=2, max_wait_seconds=20.0)
    event_id = app.test_client().post("/events", json={"event_type": "x"}).get_json()["event_id"]
    url = f"/events/{event_id}?wait=20"
    slots = appstate.of(app).long_polls

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        # One test client per thread: each stands for a separate HTTP connection.
        waiters = [pool.submit(app.test_client().get, url) for _ in range(2)]
        wait_until(lambda: slots.in_use == 2)

        started = time.monotonic()
        refused = app.test_client().get(url)
        assert time.monotonic() - started < 2.0
        body = assert_problem(refused, 503)
        assert refused.headers["Retry-After"] == "1"
        assert "EVENTFLO_MAX_LONG_POLLS" in body["detail"]
        # Reading without wait needs no slot.
        assert app.test_client().get(f"/events/{event_id}").status_code == 200
        assert not any(waiter.done() for waiter in waiters)

        worker = Worker(config)
        try:
            assert worker.run_once() == 1
        finally:
            worker.close()
        answers = [waiter.result(timeout=15) for waiter in waiters]

    assert [(a.status_code, a.get_json()["status"]) for a in answers] == [(200, "completed")] * 2
    assert slots.in_use == 0
    # The slots are free again: a new wait is accepted (and answers at once: the event is done).
    assert app.test_client().get(url).status_code == 200


def test_a_waiting_request_gives_its_slot_back_when_it_times_out(make_app):
    app = make_app(max_long_polls=1, max_wait_seconds=0.2)
    client = app.test_client()
    event_id = client.post("/events", json={"event_type": "x"}).get_json()["event_id"]
    for _ in range(3):
        response = client.get(f"/events/{event_id}?wait=5")
        assert (response.status_code, response.get_json()["status"]) == (200, "queued")
    assert appstate.of(app).long_polls.in_use == 0


# -- timeouts of the app's connections ------------------------------------


def test_the_apps_connections_carry_both_timeouts(make_app):
    app = make_app(statement_timeout=1.5)
    app.test_client().get("/events")  # opens the pool
    with appstate.of(app).pool.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "1500ms"
        row = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert row["idle_in_transaction_session_timeout"] == "1500ms"


def test_a_statement_over_the_timeout_is_503_and_the_api_recovers(make_app, conn):
    client = make_app(statement_timeout=0.5).test_client()
    assert client.get("/events").status_code == 200
    with conn.transaction():
        conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = client.post("/events", json={"event_type": "x"})
        elapsed = time.monotonic() - started
    body = assert_problem(response, 503)
    assert "statement timeout" in body["detail"]
    assert 0.4 < elapsed < 3.0
    assert client.post("/events", json={"event_type": "x"}).status_code == 202


def test_an_abandoned_transaction_is_ended_by_the_server(make_app, conn):
    app = make_app(statement_timeout=0.3)
    app.test_client().get("/events")
    with appstate.of(app).pool.connection() as pooled:
        pid = pooled.info.backend_pid
        with pytest.raises(psycopg.Error), pooled.transaction():
            pooled.execute("SELECT 1")
            time.sleep(1.0)  # idle in transaction, past the timeout
            pooled.execute("SELECT 1")
    # The server ended that session: it no longer pins the vacuum horizon.
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()["n"]
            == 0
        )
    )
    # The pool replaces the broken connection; the API goes on.
    assert app.test_client().get("/events").status_code == 200


def test_a_request_that_cannot_get_a_pooled_connection_in_time_is_503(make_app):
    app = make_app(pool_size=1, pool_timeout=0.5)
    client = app.test_client()
    assert client.get("/events").status_code == 200
    with appstate.of(app).pool.connection():  # the pool's only connection
        started = time.monotonic()
        response = client.get("/events")
        elapsed = time.monotonic() - started
    body = assert_problem(response, 503)
    assert "no database connection became available" in body["detail"]
    assert 0.4 < elapsed < 2.0
    assert client.get("/events").status_code == 200


# -- the settings themselves ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EVENTFLO_MAX_JSON_KEYS", "0"),
        ("EVENTFLO_MAX_JSON_KEYS", "1000001"),
        ("EVENTFLO_MAX_JSON_KEYS", "many"),
        ("EVENTFLO_MAX_LONG_POLLS", "0"),
        ("EVENTFLO_MAX_LONG_POLLS", "10001"),
        ("EVENTFLO_MAX_LONG_POLLS", "1.5"),
    ],
)
def test_a_bad_limit_is_a_clear_error_at_start_up(name, value):
    with pytest.raises(ConfigError, match=f"{name}='{value}' is invalid"):
        Config.from_env({name: value})


def test_the_limits_are_read_from_the_environment():
    config = Config.from_env({"EVENTFLO_MAX_JSON_KEYS": "50", "EVENTFLO_MAX_LONG_POLLS": "7"})
    assert (config.max_json_keys, config.max_long_polls) == (50, 7)
    assert (Config().max_json_keys, Config().max_long_polls) == (1000, 100)
