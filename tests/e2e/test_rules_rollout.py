"""Rule versions in real processes: the CLI applies and rolls back, workers and the API follow.

The walkthrough starts from an empty database, as a new user would: migrate,
apply a rule file declaring ``disk_full``, POST an event, read its CRITICAL
verdict and ``rules_version`` 2; roll back to version 1, replay, and read
version 1's verdict. The rollout test activates a version while two worker
processes drain, and checks from the stored timestamps that no event claimed
after the activation committed was judged by the old version.
"""

from __future__ import annotations

import pathlib
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import rules, ruleversions
from tests.e2e.conftest import (
    e2e_environment,
    eventflo,
    start_api,
    start_worker,
    tracked_children,
    wait_all_completed,
    wait_for,
    wait_listening,
)

pytestmark = pytest.mark.e2e

# The rule file of the walkthrough in docs/rules.md.
DISK_FILE = """\
fields:
  disk_full:
    percent: {type: number}
    host: {type: string, default: "unknown"}
rules:
  - id: disk_full.critical
    event_type: disk_full
    when: payload.percent >= 90
    severity: CRITICAL
    escalate: true
    reason: "Disk on {{payload.host}} is {{payload.percent}}% full"
    recommendation: "Free space or grow the volume on {{payload.host}}"
  - id: default
    severity: LOW
    escalate: false
    reason: "No specific rule for this event type"
    recommendation: "No action needed; keep for the record"
tests:
  - event: {event_type: disk_full, payload: {percent: 95, host: db1}}
    expect: {rule: disk_full.critical, severity: CRITICAL, escalate: true}
"""


def test_the_disk_full_walkthrough_from_an_empty_database(
    request: pytest.FixtureRequest,
    empty_database_url: str,
    runtime_dir: str,
    tmp_path: pathlib.Path,
) -> None:
    env = e2e_environment(empty_database_url, runtime_dir)
    eventflo(env, "migrate")
    rule_file = tmp_path / "disk.yaml"
    rule_file.write_text(DISK_FILE, encoding="utf-8")
    assert "valid: 2 rules, 1 tests passed" in eventflo(env, "rules", "check", str(rule_file))
    applied = eventflo(env, "rules", "apply", str(rule_file), "--message", "disk_full", "--yes")
    assert "stored version 2" in applied

    with tracked_children(request, tmp_path, env) as children:
        api = start_api(children)
        start_worker(children)
        try:
            # The API validates from version 2: a disk_full without percent is refused.
            answers: list[Any] = []  # a 422 Response is falsy: keep it aside
            wait_for(
                lambda: (
                    answers.append(api.post_event("disk_full", {"host": "db1"}))
                    or answers[-1].status_code == 422
                ),
                timeout=15,
                what="the API to validate from version 2",
            )
            refused = answers[-1]
            assert refused.json()["rules_version"] == 2
            assert api.session.get(f"{api.base_url}/rules", timeout=10).json()["version"] == 2

            posted = api.post_event("disk_full", {"percent": 95, "host": "db1"})
            assert posted.status_code == 202, posted.text
            event_id = posted.json()["event_id"]
            event = api.wait_finished(event_id)
            assert event["status"] == "completed"
            assert _verdict(event) == ("CRITICAL", True, "disk_full.critical", 2)
            assert event["result"]["classification_reason"] == "Disk on db1 is 95% full"

            assert "version 1 is active again" in eventflo(env, "rules", "rollback", "1")
            replayed = eventflo(env, "replay", "--status", "completed", "--id", event_id, "--yes")
            assert "requeued 1 event(s)" in replayed
            event = wait_for(
                lambda: (
                    (e := api.get_event(event_id, wait=5))["status"] == "completed"
                    and e["result"]["rules_version"] == 1
                    and e
                ),
                timeout=30,
                what="the replayed event judged by version 1",
            )
            assert _verdict(event) == ("LOW", False, "default", 1)
        finally:
            api.session.close()


def _verdict(event: dict[str, Any]) -> tuple[str, bool, str, int]:
    result = event["result"]
    return (
        result["severity"],
        result["should_escalate"],
        result["rule"],
        result["rules_version"],
    )


TOTAL = 20_000


def test_an_activation_while_two_workers_drain_switches_every_later_claim(
    children: Any, conn: psycopg.Connection[dict[str, Any]], database_url: str
) -> None:
    conn.execute(
        "INSERT INTO events (event_type, payload)"
        " SELECT 'disk_full', jsonb_build_object('percent', 95, 'host', 'h' || i)"
        " FROM generate_series(1, %s) AS i",
        [TOTAL],
    )
    # Small batches: many claims, so some land on each side of the activation.
    start_worker(children, EVENTFLO_BATCH_SIZE="20")
    start_worker(children, EVENTFLO_BATCH_SIZE="20")
    wait_listening(conn, 2)
    wait_for(
        lambda: _completed(conn) >= 500,
        timeout=60,
        what="the drain to start",
        interval=0.01,
    )

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as own:
        done = ruleversions.apply(own, rules.load(DISK_FILE), message="", created_by="e2e")
        committed_by = own.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
        # Whatever is still queued now is claimed after the activation committed.
        later = {row["id"] for row in own.execute("SELECT id FROM events WHERE status = 'queued'")}
    assert done.version == 2
    assert later, "the drain ended before the activation: nothing left to test"

    wait_all_completed(conn, TOTAL, timeout=180)
    results = conn.execute(
        "SELECT r.event_id, r.rules_version, r.severity::text, a.worker_id, a.started_at"
        " FROM event_processing_results AS r"
        " JOIN event_attempts AS a ON a.event_id = r.event_id AND a.outcome = 'completed'"
    ).fetchall()
    assert len(results) == TOTAL
    by_version: dict[int, int] = {}
    batches: dict[tuple[str, Any], set[int]] = {}
    for row in results:
        by_version[row["rules_version"]] = by_version.get(row["rules_version"], 0) + 1
        # Each version gave its own verdict.
        assert row["severity"] == ("CRITICAL" if row["rules_version"] == 2 else "LOW"), row
        if row["event_id"] in later:
            assert row["rules_version"] == 2, f"claimed after the activation, judged by v1: {row}"
        if row["rules_version"] == 1:
            assert row["started_at"] < committed_by, f"v1 claim after the activation: {row}"
        # A claim stamps one started_at on its whole batch: one batch, one version.
        batches.setdefault((row["worker_id"], row["started_at"]), set()).add(row["rules_version"])
    assert by_version.keys() == {1, 2}, by_version
    mixed = {batch: versions for batch, versions in batches.items() if len(versions) > 1}
    assert not mixed, f"batches judged by more than one version: {mixed}"
    workers = {worker for worker, _ in batches}
    assert len(workers) == 2, "both worker processes drained"


def _completed(conn: psycopg.Connection[dict[str, Any]]) -> int:
    row = conn.execute("SELECT count(*) AS n FROM events WHERE status = 'completed'").fetchone()
    assert row is not None
    return int(row["n"])
