"""The HTTP API against a real PostgreSQL: what a client sends and gets back, what is stored."""

from __future__ import annotations

import concurrent.futures
import io
import json
import re
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from eventflo import appstate
from eventflo.sql import QUERIES
from eventflo.worker import Worker
from tests import tcp_proxy

PROBLEM = "application/problem+json"
PAYMENT = {"event_type": "payment_failed", "payload": {"amount": 1500}, "source": "billing"}
NEXT_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


# -- helpers ------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def count_events(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("SELECT count(*) AS n FROM events").fetchone()["n"]


def post_event(client: Any, body: Any = PAYMENT, **kwargs: Any) -> Any:
    return client.post("/events", json=body, **kwargs)


def run_worker_once(config: Any) -> int:
    """Claim and finish every due event in this process, as a worker would; the number claimed."""
    worker = Worker(config)
    try:
        return worker.run_once()
    finally:
        worker.close()


def run_worker_until_idle(config: Any) -> None:
    """Claim and finish batches in this process until nothing is due, as a worker would."""
    worker = Worker(config)
    try:
        while worker.run_once():
            pass
    finally:
        worker.close()


def next_link(response: Any) -> str | None:
    header = response.headers.get("Link")
    if header is None:
        return None
    match = NEXT_LINK.match(header)
    assert match, header
    return match.group(1)


def wait_for_api_listener(conn: psycopg.Connection[Any], timeout: float = 10.0) -> None:
    """Block until the API's long-poll listener has run LISTEN, i.e. a GET is waiting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'eventflo-api-listener'"
            " AND query LIKE '%LISTEN eventflo_finished' AND state = 'idle'"
            " AND datname = current_database()"
        ).fetchone()
        if row is not None:
            return
        time.sleep(0.02)
    raise AssertionError("the API never started listening for finished events")


# -- POST /events -------------------------------------------------------


def test_post_stores_a_queued_event_and_points_at_it(client, conn):
    response = post_event(client)

    assert response.status_code == 202
    body = response.get_json()
    assert body == {"event_id": body["event_id"], "status": "queued"}
    event_id = uuid.UUID(body["event_id"])
    assert response.headers["Location"] == f"/events/{event_id}"
    row = conn.execute("SELECT * FROM events WHERE id = %s", (event_id,)).fetchone()
    assert row["status"] == "queued"
    assert row["event_type"] == "payment_failed"
    assert row["source"] == "billing"
    assert row["payload"] == {"amount": 1500}
    assert row["attempts"] == 0
    assert count_events(conn) == 1


def test_post_without_payload_or_source_stores_an_empty_object(client, conn):
    response = post_event(client, {"event_type": "user.signup"})

    assert response.status_code == 202
    row = conn.execute(
        "SELECT * FROM events WHERE id = %s", (response.get_json()["event_id"],)
    ).fetchone()
    assert row["payload"] == {}
    assert row["source"] is None


def test_post_accepts_an_event_type_of_exactly_100_characters(client, conn):
    response = post_event(client, {"event_type": "a" * 100})

    assert response.status_code == 202
    assert count_events(conn) == 1


# -- GET /events/{id} ---------------------------------------------------


def test_get_shows_a_queued_event_without_a_result(client):
    event_id = post_event(client).get_json()["event_id"]

    response = client.get(f"/events/{event_id}")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert {
        "event_id",
        "event_type",
        "source",
        "status",
        "payload",
        "attempts",
        "error_message",
        "created_at",
        "updated_at",
        "completed_at",
        "result",
    } <= body.keys()
    assert body["event_id"] == event_id
    assert body["event_type"] == "payment_failed"
    assert body["source"] == "billing"
    assert body["status"] == "queued"
    assert body["payload"] == {"amount": 1500}
    assert body["attempts"] == 0
    assert body["error_message"] is None
    assert body["completed_at"] is None
    assert body["result"] is None
    assert body["history"] == []
    assert body["created_at"] and body["updated_at"]


def test_get_shows_the_result_and_history_once_completed(client, config):
    event_id = post_event(client).get_json()["event_id"]
    assert run_worker_once(config) == 1

    body = client.get(f"/events/{event_id}").get_json()

    assert body["status"] == "completed"
    assert body["attempts"] == 1
    assert body["completed_at"] is not None
    assert body["error_message"] is None
    result = body["result"]
    assert result.keys() == {
        "severity",
        "classification_reason",
        "recommendation",
        "should_escalate",
        "rule",
        "rules_version",
        "processed_at",
    }
    assert result["rules_version"] == 1, "judged by the shipped rules, version 1"
    assert result["severity"] == "CRITICAL"
    assert result["should_escalate"] is True
    assert result["rule"] == "payment_failed.large"
    assert result["classification_reason"] and result["recommendation"]
    assert result["processed_at"]
    assert len(body["history"]) == 1
    assert body["history"][0]["attempt"] == 1
    assert body["history"][0]["outcome"] == "completed"


def test_unknown_event_is_404(client):
    body = assert_problem(client.get(f"/events/{uuid.uuid4()}"), 404)
    assert "No event" in body["detail"]


def test_unknown_event_with_wait_is_404_at_once(client):
    started = time.monotonic()
    assert_problem(client.get(f"/events/{uuid.uuid4()}?wait=5"), 404)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "x" * 300])
def test_malformed_event_id_is_400(client, bad_id):
    assert_problem(client.get(f"/events/{bad_id}"), 400)


# -- GET /events/{id}?wait= ----------------------------------------------


def test_wait_returns_as_soon_as_the_event_completes(app, client, config, conn):
    # Without its fallback poll, only the worker's NOTIFY can wake the request in time.
    appstate.of(app).finished_listener.FALLBACK_POLL = 30.0
    event_id = post_event(client).get_json()["event_id"]

    def complete_while_the_request_waits() -> int:
        wait_for_api_listener(conn)  # the GET below has started waiting
        return run_worker_once(config)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        completed = pool.submit(complete_while_the_request_waits)
        started = time.monotonic()
        response = client.get(f"/events/{event_id}?wait=10")
        elapsed = time.monotonic() - started
        assert completed.result(timeout=10) == 1

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "completed"
    assert body["result"]["severity"] == "CRITICAL"
    assert elapsed < 5, f"the long-poll took {elapsed:.2f} s to notice the completion"


def test_wait_times_out_with_the_event_still_queued(client):
    event_id = post_event(client).get_json()["event_id"]

    started = time.monotonic()
    response = client.get(f"/events/{event_id}?wait=0.5")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.get_json()["status"] == "queued"
    assert 0.5 <= elapsed < 3


def test_wait_on_a_finished_event_answers_at_once(client, config):
    event_id = post_event(client).get_json()["event_id"]
    run_worker_once(config)

    started = time.monotonic()
    response = client.get(f"/events/{event_id}?wait=10")

    assert response.get_json()["status"] == "completed"
    assert time.monotonic() - started < 3


def test_wait_above_the_cap_is_capped(make_app):
    client = make_app(max_wait_seconds=0.3).test_client()
    event_id = post_event(client).get_json()["event_id"]

    started = time.monotonic()
    response = client.get(f"/events/{event_id}?wait=100")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.get_json()["status"] == "queued"
    assert 0.3 <= elapsed < 3


@pytest.mark.parametrize("wait", ["-1", "soon", "nan", "inf"])
def test_invalid_wait_is_422(client, wait):
    event_id = post_event(client).get_json()["event_id"]
    body = assert_problem(client.get(f"/events/{event_id}?wait={wait}"), 422)
    assert "wait" in body["errors"]


# -- GET /events --------------------------------------------------------


def test_list_is_newest_first_with_the_summary_fields(client):
    ids = [post_event(client, {"event_type": f"type_{i}"}).get_json()["event_id"] for i in range(3)]

    response = client.get("/events")

    assert response.status_code == 200
    rows = response.get_json()
    assert [row["event_id"] for row in rows] == ids[::-1]
    assert rows[0].keys() == {"event_id", "event_type", "status", "created_at"}
    assert rows[0]["event_type"] == "type_2"
    assert rows[0]["status"] == "queued"
    assert "Link" not in response.headers


def test_list_follows_next_links_through_every_event_exactly_once(client):
    ids = [post_event(client, {"event_type": "tick"}).get_json()["event_id"] for _ in range(45)]

    default_page = client.get("/events")
    assert len(default_page.get_json()) == 20

    seen: list[str] = []
    pages: list[int] = []
    url: str | None = "/events?limit=20"
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        page = response.get_json()
        pages.append(len(page))
        seen.extend(row["event_id"] for row in page)
        url = next_link(response)
        assert len(pages) <= 10, "pagination does not end"

    assert pages == [20, 20, 5]
    assert seen == ids[::-1]


def test_a_full_last_page_links_to_an_empty_page(client):
    # The next link is given whenever a page is full: the server does not look ahead,
    # so exactly 40 events take a third request that answers [] without a link.
    ids = [post_event(client, {"event_type": "tick"}).get_json()["event_id"] for _ in range(40)]

    first = client.get("/events?limit=20")
    second = client.get(next_link(first))
    third_url = next_link(second)
    assert third_url is not None
    third = client.get(third_url)

    assert [r["event_id"] for r in first.get_json() + second.get_json()] == ids[::-1]
    assert third.status_code == 200
    assert third.get_json() == []
    assert next_link(third) is None


def test_next_link_keeps_the_filters(client):
    for _ in range(3):
        post_event(client, {"event_type": "keep"})
    for _ in range(2):
        post_event(client, {"event_type": "other"})

    first = client.get("/events?event_type=keep&limit=2")
    link = next_link(first)
    assert link is not None and "event_type=keep" in link and "limit=2" in link
    second = client.get(link)

    assert [r["event_type"] for r in first.get_json() + second.get_json()] == ["keep"] * 3
    assert next_link(second) is None


def test_listing_reads_the_primary_key_backwards_not_the_whole_table(conn):
    # No listing index of its own: time-ordered ids make the primary key one.
    conn.execute(
        "INSERT INTO events (event_type, status, completed_at)"
        " SELECT 'bulk_done', 'completed', now() FROM generate_series(1, 20000)"
    )
    conn.execute("ANALYZE events")
    params = {"limit": 20, "status": None, "event_type": None, "after_id": None}
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + QUERIES["list_events"], params).fetchone()
    nodes = list(_plan_nodes(plan["QUERY PLAN"][0]["Plan"]))
    assert any(
        n.get("Index Name") == "events_pkey" and n.get("Scan Direction") == "Backward"
        for n in nodes
    ), nodes
    assert not any(n["Node Type"] in ("Seq Scan", "Sort") for n in nodes), nodes


def test_ids_order_events_by_insert_time_within_a_millisecond(conn):
    # Listing and its cursor rely on this: the sub-millisecond bits of the id
    # follow the clock, so back-to-back inserts come out in order.
    ids = [
        conn.execute("INSERT INTO events (event_type) VALUES ('tick') RETURNING id").fetchone()[
            "id"
        ]
        for _ in range(200)
    ]
    assert ids == sorted(ids)


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_list_limit_is_capped(make_app):
    client = make_app(list_limit_max=5).test_client()
    for _ in range(7):
        post_event(client, {"event_type": "tick"})

    response = client.get("/events?limit=1000")

    assert response.status_code == 200
    assert len(response.get_json()) == 5
    assert next_link(response) is not None


def test_list_filters_by_status_and_event_type(client, config):
    done = [post_event(client, PAYMENT).get_json()["event_id"] for _ in range(2)]
    assert run_worker_once(config) == 2
    queued_payment = post_event(client, PAYMENT).get_json()["event_id"]
    queued_sla = post_event(client, {"event_type": "sla_breach"}).get_json()["event_id"]

    def listed(query: str) -> list[str]:
        response = client.get(f"/events?{query}")
        assert response.status_code == 200
        return [row["event_id"] for row in response.get_json()]

    assert listed("status=completed") == done[::-1]
    assert listed("status=queued") == [queued_sla, queued_payment]
    assert listed("event_type=sla_breach") == [queued_sla]
    assert listed("status=queued&event_type=payment_failed") == [queued_payment]
    assert listed("status=failed") == []
    assert listed("event_type=nothing_like_this") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=not-a-cursor!", "cursor"),
        ("cursor=" + "bm90IGEgY3Vyc29y", "cursor"),  # base64 of "not a cursor"
        # The (created_at|id) cursor used before migration 0004.
        (
            "cursor=MjAyNi0xMS0yNVQxOTowMDowMCswMDowMHwwMWEyMTQzNS1iMTNiLTdlMDQtYmRkMC1mMzEwNzM4ZDczMjI",
            "cursor",
        ),
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=many", "limit"),
        ("event_type=Not%20A%20Type", "event_type"),
        ("event_type=tick%0A", "event_type"),
    ],
)
def test_invalid_list_query_is_422(client, query, field):
    body = assert_problem(client.get(f"/events?{query}"), 422)
    assert field in body["errors"]


# -- Idempotency-Key ----------------------------------------------------


def test_same_key_and_request_returns_the_original_event(client, conn):
    first = post_event(client, headers={"Idempotency-Key": "order-42"})
    again = post_event(client, headers={"Idempotency-Key": "order-42"})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert count_events(conn) == 1


def test_same_key_with_another_request_is_409(client, conn):
    first = post_event(client, headers={"Idempotency-Key": "order-42"})
    other = dict(PAYMENT, payload={"amount": 1})

    body = assert_problem(post_event(client, other, headers={"Idempotency-Key": "order-42"}), 409)

    assert first.get_json()["event_id"] in body["detail"]
    assert count_events(conn) == 1


def test_different_keys_make_different_events(client, conn):
    a = post_event(client, headers={"Idempotency-Key": "a"}).get_json()["event_id"]
    b = post_event(client, headers={"Idempotency-Key": "b"}).get_json()["event_id"]

    assert a != b
    assert count_events(conn) == 2


def test_concurrent_identical_requests_make_one_event(app, conn):
    clients = [app.test_client() for _ in range(20)]
    start = threading.Barrier(len(clients))

    def send(client: Any) -> tuple[int, str]:
        start.wait(timeout=10)
        response = post_event(client, headers={"Idempotency-Key": "burst-1"})
        return response.status_code, response.get_json()["event_id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(clients)) as pool:
        answers = list(pool.map(send, clients))

    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [202]
    assert len({event_id for _, event_id in answers}) == 1
    assert count_events(conn) == 1


@pytest.mark.parametrize("key", ["", "k" * 256, "bad\tkey"])
def test_invalid_idempotency_key_is_400(client, conn, key):
    assert_problem(post_event(client, headers={"Idempotency-Key": key}), 400)
    assert count_events(conn) == 0


def test_idempotency_key_of_255_characters_is_accepted(client):
    assert post_event(client, headers={"Idempotency-Key": "k" * 255}).status_code == 202


# -- bad input: a clear 4xx, a problem document, nothing stored ---------

JSON = "application/json"

BAD_BODIES = [
    # (id, body bytes, content type, status, field named in errors or None)
    ("malformed-json", b'{"event_type": ', JSON, 400, None),
    ("array-body", b"[1]", JSON, 422, None),
    ("string-body", b'"x"', JSON, 422, None),
    ("null-body", b"null", JSON, 422, None),
    ("missing-event-type", b'{"payload": {}}', JSON, 422, "event_type"),
    ("empty-event-type", b'{"event_type": ""}', JSON, 422, "event_type"),
    (
        "overlong-event-type",
        json.dumps({"event_type": "a" * 101}).encode(),
        JSON,
        422,
        "event_type",
    ),
    ("ill-formed-event-type", b'{"event_type": "Payment Failed"}', JSON, 422, "event_type"),
    ("event-type-not-a-string", b'{"event_type": 7}', JSON, 422, "event_type"),
    # Python's "$" also matches before a final newline; PostgreSQL's CHECK does not.
    (
        "event-type-trailing-newline",
        b'{"event_type": "payment_failed\\n"}',
        JSON,
        422,
        "event_type",
    ),
    ("payload-array", b'{"event_type": "x", "payload": [1, 2]}', JSON, 422, "payload"),
    ("payload-string", b'{"event_type": "x", "payload": "hello"}', JSON, 422, "payload"),
    ("source-not-a-string", b'{"event_type": "x", "source": 5}', JSON, 422, "source"),
    ("empty-source", b'{"event_type": "x", "source": ""}', JSON, 422, "source"),
    (
        "overlong-source",
        json.dumps({"event_type": "x", "source": "s" * 201}).encode(),
        JSON,
        422,
        "source",
    ),
    (
        "amount-wrong-type",
        b'{"event_type": "payment_failed", "payload": {"amount": "lots"}}',
        JSON,
        422,
        "payload",
    ),
    ("nan", b'{"event_type": "x", "payload": {"v": NaN}}', JSON, 400, None),
    ("infinity", b'{"event_type": "x", "payload": {"v": Infinity}}', JSON, 400, None),
    ("minus-infinity", b'{"event_type": "x", "payload": {"v": -Infinity}}', JSON, 400, None),
    ("overflowing-number", b'{"event_type": "x", "payload": {"v": 1e400}}', JSON, 400, None),
    (
        "nul-in-string",
        b'{"event_type": "x", "payload": {"v": "a\\u0000b"}}',
        JSON,
        422,
        "payload.v",
    ),
    ("nul-in-key", b'{"event_type": "x", "payload": {"a\\u0000": 1}}', JSON, 422, "payload"),
    ("lone-surrogate", b'{"event_type": "x", "payload": {"v": "\\ud800"}}', JSON, 422, "payload.v"),
    ("invalid-utf8", b'{"event_type": "x", "payload": {"v": "\xff\xfe"}}', JSON, 400, None),
    (
        "deep-nesting",
        b'{"event_type": "x", "payload": {"v": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        JSON,
        None,
        None,
    ),
    ("form-encoded", b"event_type=x&payload=y", "application/x-www-form-urlencoded", 415, None),
    ("no-content-type", json.dumps(PAYMENT).encode(), None, 415, None),
    ("text-plain", json.dumps(PAYMENT).encode(), "text/plain", 415, None),
    ("unknown-field", b'{"event_type": "x", "priority": 1}', JSON, 422, "priority"),
    ("empty-body", b"", JSON, 400, None),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    client, conn, body, content_type, status, field
):
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/events", data=body, headers=headers)

    if status is None:  # any client error will do, as long as it is not a 500
        assert 400 <= response.status_code < 500, response.get_data(as_text=True)
        status = response.status_code
    problem = assert_problem(response, status)
    if field is not None:
        assert field in problem["errors"], problem
    assert count_events(conn) == 0


@pytest.mark.parametrize("body", [b"[]", b'[{"event_type": "x"}]', b"null", b'"x"', b"5", b"true"])
def test_a_body_that_is_not_a_json_object_says_so(client, conn, body):
    response = client.post("/events", data=body, content_type=JSON)

    problem = assert_problem(response, 422)
    assert problem["detail"] == "The body must be a JSON object."
    assert "_schema" not in json.dumps(problem)
    assert count_events(conn) == 0


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"event_type": "x", "event_type": "y"}', "event_type"),
        (b'{"event_type": "x", "payload": {"amount": 1, "amount": 2000}}', "amount"),
        (b'{"event_type": "x", "payload": {"deep": [{"k": 1, "k": 2}]}}', "k"),
    ],
)
def test_a_key_twice_in_one_object_is_a_400_naming_it_and_nothing_is_stored(
    client, conn, body, key
):
    response = client.post("/events", data=body, content_type=JSON)

    problem = assert_problem(response, 400)
    assert f"'{key}'" in problem["detail"] and "twice" in problem["detail"]
    assert count_events(conn) == 0


def test_wrong_type_of_a_field_the_rules_read_names_that_field(client, conn):
    response = post_event(client, {"event_type": "payment_failed", "payload": {"amount": "lots"}})

    problem = assert_problem(response, 422)
    assert "amount" in problem["errors"]["payload"]
    assert count_events(conn) == 0


def test_a_20_mb_body_is_413(client, conn):
    body = b'{"event_type": "x", "payload": {"v": "' + b"a" * (20 * 1024 * 1024) + b'"}}'

    response = client.post("/events", data=body, content_type=JSON)

    problem = assert_problem(response, 413)
    assert problem["detail"] == (
        "The body is larger than the limit of 1048576 bytes (EVENTFLO_MAX_BODY_BYTES)."
    )
    assert count_events(conn) == 0


# -- routing errors -----------------------------------------------------


def test_unknown_route_is_a_404_problem_not_html(client):
    response = client.get("/nothing/here")
    assert_problem(response, 404)
    assert b"<html" not in response.get_data().lower()


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/events")

    assert_problem(response, 405)
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed


def test_wrong_method_on_one_event_is_405(client):
    response = client.put(f"/events/{uuid.uuid4()}", json=PAYMENT)

    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


# -- the database goes away and comes back --------------------------------


def test_database_down_is_503_fast_and_the_api_recovers(make_app, database_url):
    with tcp_proxy.TcpProxy(tcp_proxy.upstream_of(database_url)) as proxy:
        app = make_app(
            database_url=tcp_proxy.url_through(database_url, proxy.port), pool_timeout=2.0
        )
        client = app.test_client()
        event_id = post_event(client).get_json()["event_id"]
        assert client.get(f"/events/{event_id}").status_code == 200

        proxy.cut()
        for request in (
            lambda: post_event(client),
            lambda: client.get(f"/events/{event_id}"),
            lambda: client.get("/events"),
        ):
            started = time.monotonic()
            response = request()
            elapsed = time.monotonic() - started
            assert_problem(response, 503)
            assert elapsed < 8, f"the 503 took {elapsed:.1f} s"

        proxy.restore()
        # The pool reconnects in the background with a back-off; a client retries.
        deadline = time.monotonic() + 30
        while True:
            response = post_event(client, {"event_type": "after_outage"})
            if response.status_code != 503 or time.monotonic() > deadline:
                break
        assert response.status_code == 202
        assert client.get(f"/events/{event_id}").get_json()["status"] == "queued"
        assert client.get(response.headers["Location"]).status_code == 200


def test_database_down_at_start_up_is_503_not_a_crash(make_app):
    app = make_app(database_url="postgresql://nobody@127.0.0.1:1/nothing", pool_timeout=1.0)
    client = app.test_client()
    started = time.monotonic()
    assert_problem(client.get("/events"), 503)
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_the_limit_is_413_not_truncated(make_app, conn):
    client = make_app(max_body_bytes=1000).test_client()
    body = json.dumps({"event_type": "x", "payload": {"s": "a" * 5000}}).encode()
    response = client.post(
        "/events",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        # What gunicorn says of a chunked body: the stream ends where the body ends.
        environ_overrides={"wsgi.input_terminated": True},
    )
    problem = assert_problem(response, 413)
    assert "limit of 1000 bytes (EVENTFLO_MAX_BODY_BYTES)" in problem["detail"]
    assert count_events(conn) == 0


def test_an_integer_beyond_any_double_is_stored_and_judged(client, config):
    response = post_event(client, {"event_type": "payment_failed", "payload": {"amount": 10**400}})
    assert response.status_code == 202
    run_worker_once(config)
    body = client.get(response.headers["Location"]).get_json()
    assert body["result"]["rule"] == "payment_failed.large"
    assert body["payload"]["amount"] == 10**400


# -- OpenAPI ------------------------------------------------------------


def test_openapi_lists_every_operation(client):
    response = client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.get_json()["paths"]
    assert {"post", "get"} <= paths["/events"].keys()
    assert "get" in paths["/events/{event_id}"]
    assert "post" in paths["/events/batch"]
