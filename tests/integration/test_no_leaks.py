"""Nothing internal leaves the process: no traceback, SQL or connection string in an answer,
no password in a log line."""

from __future__ import annotations

import dataclasses
import logging
import threading
import urllib.parse

import pytest

from eventflo.worker import Worker
from tests.integration.test_api import PAYMENT, assert_problem

SECRET = "s3cret-Passw0rd"
# Nothing listens on port 1: every connection attempt fails at once.
UNREACHABLE = f"postgresql://eventflo:{SECRET}@127.0.0.1:1/eventflo_db"


def _no_internals(text: str) -> None:
    internals = (
        SECRET,
        "Traceback",
        'File "',
        "SELECT ",
        "INSERT ",
        "psycopg",
        "127.0.0.1:1",
        "eventflo_db",
    )
    for internal in internals:
        assert internal not in text, f"{internal!r} leaked: {text}"


def test_a_failing_query_is_a_plain_500(app, conn):
    client = app.test_client()
    # An error EventFlo has no meaning for: every insert into events fails inside PostgreSQL.
    conn.execute(
        "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'INSERT refused by a trigger'; END$$"
    )
    conn.execute(
        "CREATE TRIGGER refuse_events BEFORE INSERT ON events"
        " FOR EACH ROW EXECUTE FUNCTION refuse_events()"
    )
    response = client.post("/events", json=PAYMENT)
    body = assert_problem(response, 500)
    _no_internals(response.get_data(as_text=True))
    assert body["detail"] == "An unexpected error occurred; it has been logged."


@pytest.mark.parametrize(
    "change",
    ["ALTER TABLE events RENAME TO events_elsewhere", "ALTER TABLE events RENAME source TO origin"],
)
def test_a_schema_behind_the_code_is_a_503_that_says_migrate(app, conn, change):
    conn.execute(change)
    response = app.test_client().post("/events", json=PAYMENT)
    body = assert_problem(response, 503)
    _no_internals(response.get_data(as_text=True))
    assert body["title"] == "Database schema not current"
    assert "run `eventflo migrate`" in body["detail"]


def test_an_unreachable_database_is_a_503_without_its_address(make_app, caplog):
    client = make_app(database_url=UNREACHABLE, pool_timeout=1.0).test_client()
    with caplog.at_level(logging.DEBUG):
        answers = [client.post("/events", json=PAYMENT)]
        answers += [client.get(path) for path in ("/events", "/readyz")]
        for response in answers:
            assert_problem(response, 503)
            _no_internals(response.get_data(as_text=True))
    assert SECRET not in caplog.text


def test_a_worker_never_logs_the_database_password(config, caplog):
    worker = Worker(dataclasses.replace(config, database_url=UNREACHABLE))
    stop = threading.Timer(2.0, worker.stop.set)
    with caplog.at_level(logging.DEBUG):
        stop.start()
        try:
            worker.run()  # fails to connect, backs off, retries until stopped
        finally:
            stop.cancel()
    assert "database unavailable" in caplog.text  # it did try, and said so
    assert SECRET not in caplog.text
    assert urllib.parse.quote(SECRET) not in caplog.text


@pytest.mark.parametrize("path", ["/events/not-a-uuid", "/nowhere", "/events?limit=abc"])
def test_client_errors_say_what_is_wrong_and_nothing_more(client, path):
    response = client.get(path)
    assert 400 <= response.status_code < 500
    _no_internals(response.get_data(as_text=True))
