"""POST /events/batch: many events in one transaction, all or none, with per-event idempotency."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.test_api import assert_problem, count_events


def _item(n: int, **extra):
    return {"event_type": "payment_failed", "payload": {"amount": n}, **extra}


def test_a_batch_is_stored_in_request_order_with_one_notify(client, conn, database_url):
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN eventflo_queued")
        response = client.post("/events/batch", json={"events": [_item(n) for n in range(250)]})
        notifications = list(listener.notifies(timeout=1.0))

    assert response.status_code == 202
    answers = response.get_json()["events"]
    assert len(answers) == 250
    assert all(a["status"] == "queued" and a["created"] for a in answers)
    stored = {
        str(row["id"]): row["payload"]["amount"]
        for row in conn.execute("SELECT id, payload FROM events")
    }
    assert [stored[a["event_id"]] for a in answers] == list(range(250))
    assert len(notifications) == 1


def test_one_invalid_event_rejects_the_whole_batch_and_names_it(client, conn):
    body = {
        "events": [
            _item(1),
            {"event_type": "Bad Type"},
            _item(3),
            _item(4, payload={"amount": "lots"}),
        ]
    }
    response = client.post("/events/batch", json=body)

    problem = assert_problem(response, 422)
    assert set(problem["errors"]["events"]) == {"1", "3"}
    assert "event_type" in problem["errors"]["events"]["1"]
    assert problem["errors"]["events"]["3"]["payload"] == {"amount": ["Must be a finite number."]}
    assert count_events(conn) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": [_item(1)] * 1001},
        {"events": "nope"},
        {},
        [_item(1)],
        {"events": [1]},
    ],
)
def test_malformed_batches_are_422_and_store_nothing(client, conn, body):
    assert_problem(client.post("/events/batch", json=body), 422)
    assert count_events(conn) == 0


def test_a_batch_of_exactly_1000_is_accepted(client, conn):
    response = client.post("/events/batch", json={"events": [_item(n) for n in range(1000)]})
    assert response.status_code == 202
    assert count_events(conn) == 1000


def test_per_event_idempotency_keys(client, conn):
    first = client.post("/events/batch", json={"events": [_item(1, idempotency_key="a"), _item(2)]})
    assert first.status_code == 202
    original = first.get_json()["events"][0]["event_id"]

    # A retry of the keyed event, next to a new one: the old event comes back, not created.
    second = client.post(
        "/events/batch", json={"events": [_item(1, idempotency_key="a"), _item(3)]}
    )
    assert second.status_code == 202
    answers = second.get_json()["events"]
    assert answers[0] == {"event_id": original, "status": "queued", "created": False}
    assert answers[1]["created"] is True

    # Only retries: 200.
    third = client.post("/events/batch", json={"events": [_item(1, idempotency_key="a")]})
    assert third.status_code == 200
    assert count_events(conn) == 3


def test_a_key_reused_for_another_event_is_409_and_stores_nothing_of_the_batch(client, conn):
    client.post("/events/batch", json={"events": [_item(1, idempotency_key="a")]})
    response = client.post(
        "/events/batch", json={"events": [_item(5), _item(2, idempotency_key="a")]}
    )
    assert_problem(response, 409)
    assert count_events(conn) == 1


def test_a_key_shared_with_the_single_endpoint(client, conn):
    single = client.post("/events", json=_item(7), headers={"Idempotency-Key": "shared"})
    batch = client.post("/events/batch", json={"events": [_item(7, idempotency_key="shared")]})
    assert batch.status_code == 200
    assert batch.get_json()["events"][0]["event_id"] == single.get_json()["event_id"]


def test_a_key_repeated_inside_one_batch(client, conn):
    same = client.post(
        "/events/batch",
        json={"events": [_item(1, idempotency_key="k"), _item(1, idempotency_key="k")]},
    )
    assert same.status_code == 202
    first, second = same.get_json()["events"]
    assert first["event_id"] == second["event_id"]
    assert (first["created"], second["created"]) == (True, False)

    different = client.post(
        "/events/batch",
        json={"events": [_item(1, idempotency_key="j"), _item(2, idempotency_key="j")]},
    )
    problem = assert_problem(different, 422)
    assert "idempotency_key" in problem["errors"]["events"]["1"]
    assert count_events(conn) == 1


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there"])
def test_an_invalid_per_event_key_is_422(client, conn, key):
    assert_problem(
        client.post("/events/batch", json={"events": [_item(1, idempotency_key=key)]}), 422
    )
    assert count_events(conn) == 0


def test_the_batch_body_limit_is_its_own(make_app, conn):
    client = make_app(max_body_bytes=1000, max_batch_body_bytes=200_000).test_client()
    body = {"events": [_item(n) for n in range(300)]}  # about 17 kB: over the single limit only
    assert client.post("/events/batch", json=body).status_code == 202
    single = assert_problem(client.post("/events", json=_item(1, source="x" * 1000)), 413)
    assert "limit of 1000 bytes (EVENTFLO_MAX_BODY_BYTES)" in single["detail"]
    huge = {"events": [_item(n, source="s" * 200) for n in range(1000)]}  # about 260 kB
    batch = assert_problem(client.post("/events/batch", json=huge), 413)
    assert "limit of 200000 bytes (EVENTFLO_MAX_BATCH_BODY_BYTES)" in batch["detail"]
    assert count_events(conn) == 300


@pytest.mark.parametrize("body", [b"[]", b"null", b'"events"', b"[1, 2]"])
def test_a_batch_body_that_is_not_a_json_object_says_so(client, conn, body):
    response = client.post("/events/batch", data=body, content_type="application/json")
    assert assert_problem(response, 422)["detail"] == "The body must be a JSON object."
    assert count_events(conn) == 0


@pytest.mark.parametrize("item", [5, None, "payment_failed", [{"event_type": "x"}]])
def test_a_batch_item_that_is_not_an_object_is_named_by_its_index(client, conn, item):
    response = client.post("/events/batch", json={"events": [_item(1), _item(2), item]})

    problem = assert_problem(response, 422)
    assert "Item 2 of events" in problem["detail"]
    assert problem["errors"] == {"events": {"2": ["Must be a JSON object."]}}
    assert count_events(conn) == 0


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"events": [{"event_type": "x"}], "events": []}', "events"),
        (
            b'{"events": [{"event_type": "x"}, {"event_type": "x", "source": "a", "source": "b"}]}',
            "source",
        ),
        (b'{"events": [{"event_type": "x", "payload": {"amount": 1, "amount": 5000}}]}', "amount"),
    ],
)
def test_a_key_twice_in_a_batch_is_a_400_naming_it_and_nothing_is_stored(client, conn, body, key):
    response = client.post("/events/batch", data=body, content_type="application/json")

    problem = assert_problem(response, 400)
    assert f"'{key}'" in problem["detail"] and "twice" in problem["detail"]
    assert count_events(conn) == 0
