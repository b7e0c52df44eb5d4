"""The whole pipeline in real processes: HTTP in, workers classify, results out; bulk; replay."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import (
    ROOT,
    expected_rules_of_bulk,
    insert_bulk,
    start_worker,
    wait_all_completed,
    wait_listening,
)

pytestmark = pytest.mark.e2e

# The seed's sample requests and what the default rules must say about each.
SAMPLES = [
    ("payment_failed", {"amount": 1500}, "billing", "CRITICAL", True, "payment_failed.large"),
    ("payment_failed", {"amount": 200}, "billing", "HIGH", False, "payment_failed.small"),
    ("sla_breach", {"minutes_over": 45}, "support", "HIGH", True, "sla_breach.major"),
    ("sla_breach", {"minutes_over": 10}, "support", "WARNING", False, "sla_breach.minor"),
    ("system_error", {"component": "db"}, "platform", "CRITICAL", True, "system_error"),
    ("user_signup", {"user_id": 42}, "web", "LOW", False, "default"),
]


def test_sample_requests_go_from_queued_to_completed_over_http(api, children, conn):
    ids = []
    for event_type, payload, source, *_ in SAMPLES:
        response = api.post_event(event_type, payload, source)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert response.headers["Location"] == f"/events/{body['event_id']}"
        ids.append(body["event_id"])

    # No worker runs yet: every event is visibly queued, without a result.
    for event_id in ids:
        event = api.get_event(event_id)
        assert (event["status"], event["result"], event["attempts"]) == ("queued", None, 0)

    # A client retrying with the same Idempotency-Key gets the original event back.
    first = api.post_event("payment_failed", {"amount": 75}, "billing", key="order-42")
    retry = api.post_event("payment_failed", {"amount": 75}, "billing", key="order-42")
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["event_id"] == first.json()["event_id"]
    ids.append(first.json()["event_id"])
    assert conn.execute("SELECT count(*) AS n FROM events").fetchone()["n"] == len(SAMPLES) + 1

    start_worker(children)
    start_worker(children)

    for event_id, (event_type, payload, source, severity, escalate, rule) in zip(
        ids[: len(SAMPLES)], SAMPLES, strict=True
    ):
        event = api.wait_finished(event_id)
        assert (event["status"], event["event_type"], event["payload"], event["source"]) == (
            "completed",
            event_type,
            payload,
            source,
        ), event
        result = event["result"]
        assert (result["severity"], result["should_escalate"], result["rule"]) == (
            severity,
            escalate,
            rule,
        ), event
        assert result["classification_reason"] and result["recommendation"]
        assert event["attempts"] == 1 and event["completed_at"] is not None
        assert [h["outcome"] for h in event["history"]] == ["completed"]
    assert api.wait_finished(ids[-1])["result"]["rule"] == "payment_failed.small"

    listed = api.session.get(f"{api.base_url}/events", timeout=10)
    assert listed.status_code == 200
    assert [row["event_id"] for row in listed.json()] == ids[::-1], (
        "GET /events must list newest first"
    )
    assert {row["status"] for row in listed.json()} == {"completed"}


def test_3000_events_over_4_worker_processes_are_each_processed_exactly_once(api, children, conn):
    total = 3000
    start_worker(children, processes=4, EVENTFLO_BATCH_SIZE="50")
    wait_listening(conn, 4)

    started = time.perf_counter()
    through_api = 8
    for n in range(through_api):
        assert api.post_event("user_signup", {"n": n}, "web").status_code == 202
    insert_bulk(conn, total - through_api)
    wait_all_completed(conn, total, timeout=60)
    elapsed = time.perf_counter() - started
    print(
        f"\n{total} events completed by 4 worker processes"
        f" in {elapsed:.2f} s ({total / elapsed:.0f}/s)"
    )

    per_event = conn.execute(
        """
        SELECT e.status::text, e.attempts,
               (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results,
               (SELECT count(*) FROM event_attempts a WHERE a.event_id = e.id) AS attempt_rows,
               (SELECT count(*) FROM event_attempts a
                 WHERE a.event_id = e.id AND a.outcome = 'completed') AS completed_attempts
        FROM events AS e
        """
    ).fetchall()
    assert len(per_event) == total
    shapes = {
        (r["status"], r["attempts"], r["results"], r["attempt_rows"], r["completed_attempts"])
        for r in per_event
    }
    assert shapes == {("completed", 1, 1, 1, 1)}, (
        "every event: completed, attempts 1, one result, one attempt"
    )

    by_rule = conn.execute(
        "SELECT r.rule_id, count(*) AS n FROM event_processing_results r"
        " JOIN events e ON e.id = r.event_id WHERE e.source = 'e2e-bulk' GROUP BY r.rule_id"
    ).fetchall()
    assert {row["rule_id"]: row["n"] for row in by_rule} == expected_rules_of_bulk(
        total - through_api
    )

    workers = conn.execute(
        "SELECT worker_id, count(*) AS n FROM event_attempts GROUP BY worker_id ORDER BY n DESC"
    ).fetchall()
    print("events per worker:", {row["worker_id"]: row["n"] for row in workers})
    assert len(workers) > 1, f"one worker did everything: {workers}"


def test_replay_requeues_failed_events_and_workers_complete_them(wsgi_api, children, conn):
    api = wsgi_api
    # The API refuses a payload the rules cannot judge, so these come in as an
    # older client or a manual insert would have stored them.
    bad = [
        str(row["id"])
        for row in conn.execute(
            "INSERT INTO events (event_type, source, payload)"
            " SELECT 'payment_failed', 'billing', jsonb_build_object('amount', 'lots', 'n', i)"
            " FROM generate_series(1, 3) AS i RETURNING id"
        ).fetchall()
    ]
    good = api.post_event("sla_breach", {"minutes_over": 5}, "support").json()["event_id"]
    start_worker(children)

    for event_id in bad:
        event = api.wait_finished(event_id)
        assert event["status"] == "failed", event
        assert "rule error" in event["error_message"] and "amount" in event["error_message"]
        assert event["result"] is None and event["attempts"] == 1
        assert [h["outcome"] for h in event["history"]] == ["failed"]
    assert api.wait_finished(good)["status"] == "completed"

    # The operator corrects the payloads, then replays the failed events while the worker runs.
    conn.execute(
        "UPDATE events SET payload = payload || '{\"amount\": 1500}' WHERE id = ANY(%s::uuid[])",
        (bad,),
    )
    dry = _eventflo(children.env, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 3 failed event(s)" in dry.stdout
    assert all(api.get_event(event_id)["status"] == "failed" for event_id in bad), (
        "--dry-run changed something"
    )

    replay = _eventflo(children.env, "replay", "--yes")
    assert replay.returncode == 0, replay.stderr
    assert "requeued 3 event(s)" in replay.stdout

    for event_id in bad:
        event = api.wait_finished(event_id)
        assert event["status"] == "completed", event
        assert event["error_message"] is None and event["attempts"] == 1
        assert (event["result"]["severity"], event["result"]["rule"]) == (
            "CRITICAL",
            "payment_failed.large",
        )
        assert [h["outcome"] for h in event["history"]] == ["failed", "completed"]

    untouched = api.get_event(good)
    assert untouched["status"] == "completed" and len(untouched["history"]) == 1, (
        "replay touched a completed event"
    )
    again = _eventflo(children.env, "replay", "--yes")
    assert again.returncode == 0 and "nothing to replay" in again.stdout


def _eventflo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventflo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
