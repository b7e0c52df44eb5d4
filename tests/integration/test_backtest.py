"""Backtests: `rules apply --dry-run` and POST /rules/simulate judge events with a draft.

On a real database with the shipped rules active (version 1): the CLI runs
in-process (CliRunner), the app through Flask's test client with keys as
`eventflo keys create` makes them. Every test also checks that nothing was
stored: no new version, the active one unchanged, the events untouched.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

import pytest

from eventflo import backtest, keys, rules, ruleversions
from tests.integration.conftest import assert_clean_exit
from tests.integration.test_api import assert_problem
from tests.rule_files import DISK_RULES

# 30 disk_full events, 10 % to 95 % full: version 1 has no disk rule, so all are default/LOW.
PERCENTS = [*range(10, 95, 3), 95]
CRITICAL = [p for p in PERCENTS if p >= 90]


def _insert(conn: Any, event_type: str, payload: dict[str, Any], status: str = "queued") -> str:
    row = conn.execute(
        "INSERT INTO events (event_type, payload, status, completed_at, error_message)"
        " VALUES (%(type)s, %(payload)s::jsonb, %(status)s::event_status,"
        " CASE WHEN %(status)s::event_status = 'completed' THEN now() END,"
        " CASE WHEN %(status)s::event_status = 'failed' THEN 'rule error: boom' END) RETURNING id",
        {"type": event_type, "payload": json.dumps(payload), "status": status},
    ).fetchone()
    return str(row["id"])


@pytest.fixture
def disk_events(conn: Any) -> dict[int, str]:
    """The 30 events by percent; a third completed and a third failed: status does not matter."""
    statuses = ("queued", "completed", "failed")
    return {
        p: _insert(conn, "disk_full", {"percent": p, "host": f"db{i}"}, statuses[i % 3])
        for i, p in enumerate(PERCENTS)
    }


def _nothing_stored(conn: Any) -> None:
    assert [(v.version, v.active) for v in ruleversions.listing(conn)] == [(1, True)]
    touched = conn.execute(
        "SELECT count(*) AS n FROM event_processing_results",
    ).fetchone()["n"]
    assert touched == 0


def _draft(tmp_path: pathlib.Path, text: str = DISK_RULES) -> str:
    path = tmp_path / "disk.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- the CLI: rules apply --dry-run ----------------------------------------------------------


def test_dry_run_counts_exactly_the_events_the_draft_changes(invoke, conn, tmp_path, disk_events):
    assert (len(PERCENTS), CRITICAL) == (30, [91, 94, 95])
    result = invoke("rules", "apply", _draft(tmp_path), "--dry-run", "--json")

    assert_clean_exit(result, 0)
    report = json.loads(result.stdout)
    changed_ids = {disk_events[p] for p in CRITICAL}
    assert (report["active_version"], report["judged"], report["changed"]) == (1, 30, 3)
    assert (report["failing_active"], report["failing_draft"]) == (0, 0)
    [by_rule] = report["rule_changes"]
    [by_severity] = report["severity_changes"]
    assert (by_rule["from"], by_rule["to"], by_rule["count"]) == (
        "default",
        "disk_full.critical",
        3,
    )
    assert (by_severity["from"], by_severity["to"], by_severity["count"]) == ("LOW", "CRITICAL", 3)
    assert set(by_rule["examples"]) == set(by_severity["examples"]) == changed_ids
    assert report["draft_failures"] == []
    _nothing_stored(conn)


def test_dry_run_prints_the_changes_and_stores_nothing(invoke, conn, tmp_path, disk_events):
    result = invoke("rules", "apply", _draft(tmp_path), "--dry-run")

    assert_clean_exit(result, 0)
    out = result.output
    assert "judged the 30 newest stored events (--last 10,000) with active version 1" in out
    assert "changed: 3 of 30" in out
    assert "default -> disk_full.critical: 3" in out and "LOW -> CRITICAL: 3" in out
    assert all(disk_events[p] in out for p in CRITICAL)
    assert disk_events[PERCENTS[0]] not in out
    assert "would fail with this file: 0" in out
    assert "nothing stored" in out
    _nothing_stored(conn)


def test_dry_run_names_the_rule_an_event_would_fail_on(invoke, conn, tmp_path, disk_events):
    """Stored before the field was declared: the draft's condition cannot read it."""
    bad = _insert(conn, "disk_full", {"percent": "lots"})
    result = invoke("rules", "apply", _draft(tmp_path), "--dry-run", "--json")

    assert_clean_exit(result, 0)
    report = json.loads(result.stdout)
    assert (report["judged"], report["changed"], report["failing_draft"]) == (31, 4, 1)
    [failure] = report["draft_failures"]
    assert (failure["rule"], failure["count"], failure["examples"]) == (
        "disk_full.critical",
        1,
        [bad],
    )
    assert "payload.percent" in failure["error"]
    fails = [c for c in report["rule_changes"] if c["to"] is None]
    assert fails == [{"from": "default", "to": None, "count": 1, "examples": [bad]}]
    text = invoke("rules", "apply", _draft(tmp_path), "--dry-run")
    assert (
        "default -> (fails): 1" in text.output
        and "1: rule disk_full.critical: payload.percent" in text.output
    )
    _nothing_stored(conn)


def test_last_judges_only_the_newest_events(invoke, conn, tmp_path, disk_events):
    result = invoke("rules", "apply", _draft(tmp_path), "--dry-run", "--last", "5", "--json")

    assert_clean_exit(result, 0)
    report = json.loads(result.stdout)
    newest = {
        str(row["id"])
        for row in conn.execute("SELECT id FROM events ORDER BY id DESC LIMIT 5").fetchall()
    }
    assert report["judged"] == 5 and report["last"] == 5
    examples = {e for change in report["rule_changes"] for e in change["examples"]}
    assert examples == newest & {disk_events[p] for p in CRITICAL}
    _nothing_stored(conn)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, 1000])
def test_batches_read_every_event_once_newest_first(conn, disk_events, batch_size):
    """Keyset batches of any size judge the same events as one read: none twice, none missed."""
    summary = backtest.backtest(
        conn, rules.default(), rules.load(DISK_RULES), last=29, batch_size=batch_size
    )
    oldest = min(disk_events.values(), key=uuid.UUID)
    assert (summary.judged, summary.changed) == (29, 3)
    assert oldest not in str(summary.as_dict())
    assert conn.info.transaction_status.name == "IDLE"  # the read-only transaction ended


def test_an_identical_file_is_backtested_and_stores_nothing(invoke, conn, tmp_path, disk_events):
    result = invoke("rules", "apply", _draft(tmp_path, rules.default_text()), "--dry-run")

    assert_clean_exit(result, 0)
    assert "changed: 0 of 30" in result.output
    assert "identical to the active version 1; nothing stored" in result.output
    _nothing_stored(conn)


@pytest.mark.parametrize("flag", [["--last", "5"], ["--json"]])
def test_last_and_json_need_dry_run(invoke, conn, tmp_path, flag):
    result = invoke("rules", "apply", _draft(tmp_path), "--yes", *flag)
    assert result.exit_code == 2
    assert "--last and --json go with --dry-run" in result.output
    _nothing_stored(conn)


def test_last_must_be_positive(invoke, conn, tmp_path):
    result = invoke("rules", "apply", _draft(tmp_path), "--dry-run", "--last", "0")
    assert result.exit_code == 2
    assert "--last" in result.output
    _nothing_stored(conn)


# -- the API: POST /rules/simulate -----------------------------------------------------------


@pytest.fixture
def admin(conn: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.create(conn, name='admin', scope='admin')[1]}"}


@pytest.fixture
def api(make_app: Any) -> Any:
    return make_app(auth=True).test_client()


def _simulate(api: Any, headers: dict[str, str], body: Any) -> Any:
    return api.post("/rules/simulate", json=body, headers=headers)


def test_simulate_judges_given_events_beside_the_active_version(api, admin, conn):
    body = {
        "rules": DISK_RULES,
        "events": [
            {"event_type": "disk_full", "payload": {"percent": 95, "host": "db1"}},
            {"event_type": "disk_full", "source": "df", "payload": {"percent": 40}},
            {"event_type": "disk_full", "payload": {"percent": "lots"}},
        ],
    }
    response = _simulate(api, admin, body)

    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["active_version"] == 1
    assert answer["tests"] == {"count": 0, "failures": []}
    critical, low, failing = answer["verdicts"]
    assert critical == {
        "rule": "disk_full.critical",
        "severity": "CRITICAL",
        "escalate": True,
        "reason": "Disk on db1 is 95% full",
        "recommendation": "Free space on db1",
        "error": None,
        "active": {
            "rule": "default",
            "severity": "LOW",
            "escalate": False,
            "reason": "No specific rule for this event type",
            "recommendation": "No action needed; keep for the record",
            "error": None,
        },
        "changed": True,
    }
    assert (low["rule"], low["severity"], low["changed"]) == ("default", "LOW", False)
    assert (failing["rule"], failing["severity"], failing["changed"]) == (
        "disk_full.critical",
        None,
        True,
    )
    assert "payload.percent" in failing["error"]
    assert "backtest" not in answer
    _nothing_stored(conn)


def test_simulate_last_gives_the_clis_backtest(api, admin, conn, disk_events):
    response = _simulate(api, admin, {"rules": DISK_RULES, "last": 10_000})

    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    summary = answer["backtest"]
    assert (summary["judged"], summary["changed"], summary["failing_draft"]) == (30, 3, 0)
    [by_rule] = summary["rule_changes"]
    assert (by_rule["from"], by_rule["to"], by_rule["count"]) == (
        "default",
        "disk_full.critical",
        3,
    )
    assert set(by_rule["examples"]) == {disk_events[p] for p in CRITICAL}
    [by_severity] = summary["severity_changes"]
    assert (by_severity["from"], by_severity["to"]) == ("LOW", "CRITICAL")
    assert "verdicts" not in answer
    _nothing_stored(conn)


def test_simulate_reports_the_drafts_failing_tests_without_refusing_it(api, admin, conn):
    draft = DISK_RULES + (
        "tests:\n"
        "  - event: {event_type: disk_full, payload: {percent: 50}}\n"
        "    expect: {severity: CRITICAL}\n"
    )
    response = _simulate(api, admin, {"rules": draft, "last": 1})

    assert response.status_code == 200, response.get_data(as_text=True)
    tests = response.get_json()["tests"]
    assert tests["count"] == 1
    line = DISK_RULES.count("\n") + 2  # the test's "- event:" line, after "tests:"
    assert tests["failures"] == [
        f"line {line}: test failed: expected severity CRITICAL; got severity LOW"
    ]
    _nothing_stored(conn)


def test_a_draft_that_does_not_load_is_a_422_with_every_line(api, admin, conn):
    draft = DISK_RULES.replace("severity: CRITICAL", "severity: URGENT").replace(
        "payload.percent >= 90", "payload.percent >="
    )
    response = _simulate(api, admin, {"rules": draft, "events": [{"event_type": "x"}]})

    problem = assert_problem(response, 422)
    assert problem["title"] == "Invalid rule file"
    lines = problem["errors"]["rules"]
    assert len(lines) == 2 and all(line.startswith("line ") for line in lines)
    assert any("URGENT" in line for line in lines)
    _nothing_stored(conn)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rules": DISK_RULES}, "_schema"),
        ({"rules": DISK_RULES, "last": 5, "events": [{"event_type": "x"}]}, "_schema"),
        ({"rules": DISK_RULES, "last": 10_001}, "last"),
        ({"rules": DISK_RULES, "last": "5"}, "last"),
        ({"rules": DISK_RULES, "events": []}, "events"),
        ({"rules": "", "last": 5}, "rules"),
        ({"rules": DISK_RULES, "events": [{"event_type": "Bad Type"}]}, "events"),
        ({"rules": DISK_RULES, "last": 5, "store": True}, "store"),
    ],
)
def test_a_bad_simulate_body_is_a_422_naming_the_field(api, admin, conn, body, field):
    problem = assert_problem(_simulate(api, admin, body), 422)
    assert field in problem["errors"]
    _nothing_stored(conn)


def test_a_simulate_body_over_the_limit_is_413(make_app, admin, conn):
    api = make_app(auth=True, max_body_bytes=4096).test_client()
    body = {"rules": DISK_RULES + "#" * 5000, "last": 1}
    problem = assert_problem(_simulate(api, admin, body), 413)
    assert "EVENTFLO_MAX_BODY_BYTES" in problem["detail"]
    _nothing_stored(conn)


def test_simulate_needs_an_admin_key(api, admin, conn):
    read_key = keys.create(conn, name="reader", scope="read")[1]
    body = {"rules": DISK_RULES, "last": 1}

    refused = api.post(
        "/rules/simulate", json=body, headers={"Authorization": f"Bearer {read_key}"}
    )
    assert_problem(refused, 403)
    assert_problem(api.post("/rules/simulate", json=body), 401)
    assert _simulate(api, admin, body).status_code == 200


def test_the_openapi_document_lists_simulate(api):
    spec = api.get("/openapi.json").get_json()
    operation = spec["paths"]["/rules/simulate"]["post"]
    assert {"200", "401", "403", "413", "422"} <= operation["responses"].keys()
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "Simulate" in body_schema["$ref"]
