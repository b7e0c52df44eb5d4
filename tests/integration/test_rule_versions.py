"""Rule versions: apply, list, show, diff, rollback; the claim, the results and the API follow.

Everything runs on a real database: the CLI in-process (CliRunner), the
workers and the app in this process, concurrent applies and claims on
connections of their own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import pathlib
import threading
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import activerules, queue, rules, ruleversions
from eventflo.sql import QUERIES
from eventflo.worker import Worker
from tests.integration.conftest import assert_clean_exit
from tests.integration.test_api import assert_problem
from tests.integration.worker_harness import closing_worker, poll_until
from tests.rule_files import DISK_RULES

DISK_EVENT = {"event_type": "disk_full", "payload": {"percent": 95, "host": "db1"}}


def _write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _versions(conn) -> list[tuple[int, bool]]:
    return [(v.version, v.active) for v in ruleversions.listing(conn)]


def _apply(invoke, path, *args):
    return invoke("rules", "apply", str(path), "--yes", *args)


def _insert_event(conn, event_type="disk_full", payload=None) -> uuid.UUID:
    payload = DISK_EVENT["payload"] if payload is None else payload
    row = conn.execute(
        "INSERT INTO events (event_type, payload) VALUES (%s, %s::jsonb) RETURNING id",
        [event_type, json.dumps(payload)],
    ).fetchone()
    return row["id"]


def _result(conn, event_id):
    return conn.execute(
        "SELECT e.status, r.severity, r.rule_id, r.rules_version FROM events AS e"
        " LEFT JOIN event_processing_results AS r ON r.event_id = e.id WHERE e.id = %s",
        [event_id],
    ).fetchone()


# -- the migration's version 1 -------------------------------------------------


def test_version_1_is_the_shipped_file_exactly_and_is_active(conn):
    stored = ruleversions.active(conn)
    assert stored.version == 1
    assert stored.text == rules.default_text(), "the migration and the package file drifted"
    assert stored.sha256 == ruleversions.sha256(rules.default())
    assert _versions(conn) == [(1, True)]


def test_stored_versions_are_immutable_and_there_is_one_active_row(conn):
    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        conn.execute("UPDATE rule_versions SET message = 'changed' WHERE version = 1")
    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        conn.execute("DELETE FROM rule_versions WHERE version = 1")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO active_rule_version (singleton, version, activated_by)"
            " VALUES (false, 1, 'x')"
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO active_rule_version (version, activated_by) VALUES (1, 'x')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO rule_versions (version, sha256, rules_text, created_by)"
            " VALUES (2, 'not-hex', 'x', 'me')"
        )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("UPDATE active_rule_version SET version = 99")


# -- apply, list, show, diff, rollback through the CLI ---------------------------


def test_apply_list_show_round_trip(invoke, conn, tmp_path):
    disk = _write(tmp_path, "disk.yaml", DISK_RULES)
    applied = _apply(invoke, disk, "--message", "disk rules")
    assert_clean_exit(applied, 0)
    assert "stored version 2" in applied.output
    assert "previous version: 1" in applied.output
    assert _versions(conn) == [(1, False), (2, True)]

    listed = json.loads(invoke("rules", "list", "--json").output)
    assert [(v["version"], v["active"], v["message"]) for v in listed] == [
        (1, False, "the shipped rules"),
        (2, True, "disk rules"),
    ]
    assert listed[1]["created_by"], "who applied it is recorded"
    assert listed[1]["sha256"] == ruleversions.sha256(rules.load(DISK_RULES))
    table = invoke("rules", "list").output.splitlines()
    assert table[0].split()[:2] == ["VERSION", "ACTIVE"]
    assert table[2].split()[:2] == ["2", "*"]

    # show prints what apply accepts back: applying it again is a no-op ("identical").
    shown = invoke("rules", "show")
    assert_clean_exit(shown, 0)
    assert shown.output == DISK_RULES
    again = _apply(invoke, _write(tmp_path, "shown.yaml", shown.output))
    assert_clean_exit(again, 0)
    assert "identical to the active version 2; nothing stored" in again.output
    assert invoke("rules", "show", "1").output == rules.default_text()
    # Comments and YAML layout are not the rules: the same canonical form is the same version.
    commented = "# my disk rules, reformatted\n" + DISK_RULES.replace(
        "host: {type: string, default: unknown}",
        "host:  # where the disk is\n      type: 'string'\n      default: \"unknown\"",
    )
    assert commented != DISK_RULES
    same = _apply(invoke, _write(tmp_path, "commented.yaml", commented))
    assert "identical to the active version 2" in same.output
    assert _versions(conn) == [(1, False), (2, True)]


def test_dry_run_and_a_declined_confirmation_store_nothing(invoke, conn, tmp_path):
    disk = _write(tmp_path, "disk.yaml", DISK_RULES)
    dry = invoke("rules", "apply", str(disk), "--dry-run")
    assert_clean_exit(dry, 0)
    assert "valid: 2 rules" in dry.output and "nothing stored" in dry.output
    declined = invoke("rules", "apply", str(disk), input="n\n")
    assert declined.exit_code == 1
    assert _versions(conn) == [(1, True)]
    accepted = invoke("rules", "apply", str(disk), input="y\n")
    assert_clean_exit(accepted, 0)
    assert _versions(conn) == [(1, False), (2, True)]


@pytest.mark.parametrize(
    ("message", "error"),
    [("x" * 1001, "at most 1000 characters"), ("a\x00b", "must not contain NUL characters")],
)
def test_a_bad_message_is_a_usage_error_and_stores_nothing(invoke, conn, tmp_path, message, error):
    result = _apply(invoke, _write(tmp_path, "disk.yaml", DISK_RULES), "--message", message)
    assert result.exit_code == 2
    assert error in result.output
    assert _versions(conn) == [(1, True)]


def test_diff_and_rollback(invoke, conn, tmp_path):
    assert_clean_exit(_apply(invoke, _write(tmp_path, "disk.yaml", DISK_RULES)), 0)
    diff = invoke("rules", "diff", "1", "2")
    assert_clean_exit(diff, 0)
    lines = diff.output.splitlines()
    assert lines[:2] == ["--- version 1", "+++ version 2"]
    assert "+  disk_full:" in lines and "-  payment_failed:" in lines
    assert invoke("rules", "diff", "2", "2").output.strip() == "versions 2 and 2 have the same text"

    back = invoke("rules", "rollback", "1")
    assert_clean_exit(back, 0)
    assert back.output.strip() == "version 1 is active again (was version 2)"
    assert _versions(conn) == [(1, True), (2, False)]
    assert invoke("rules", "rollback", "1").output.strip() == (
        "version 1 is already active; nothing changed"
    )
    log = conn.execute(
        "SELECT version, previous_version, action FROM rule_activations ORDER BY id"
    ).fetchall()
    assert [(r["version"], r["previous_version"], r["action"]) for r in log] == [
        (1, None, "install"),
        (2, 1, "apply"),
        (1, 2, "rollback"),
    ]


@pytest.mark.parametrize("command", [("rollback", "7"), ("show", "7"), ("diff", "1", "7")])
def test_an_unknown_version_is_a_one_line_error(invoke, conn, command):
    result = invoke("rules", *command)
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: there is no rule version 7 (see `eventflo rules list`)"
    )
    assert _versions(conn) == [(1, True)]


BAD_FILES = {
    "invalid YAML": "rules: [\n",
    "unknown key": DISK_RULES + "colour: blue\n",
    "failing test": DISK_RULES
    + "tests:\n  - event: {event_type: disk_full, payload: {percent: 10}}\n"
    + "    expect: {severity: CRITICAL}\n",
    "no catch-all": DISK_RULES.split("  - id: default")[0],
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_refused_by_line_and_changes_nothing(invoke, conn, tmp_path, name):
    result = _apply(invoke, _write(tmp_path, "bad.yaml", BAD_FILES[name]))
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("line ")
    assert _versions(conn) == [(1, True)]
    assert conn.execute("SELECT count(*) AS n FROM rule_activations").fetchone()["n"] == 1


def test_concurrent_applies_take_sequential_numbers(database_url, conn):
    texts = [DISK_RULES.replace("percent >= 90", f"percent >= {50 + i}") for i in range(6)]
    barrier = threading.Barrier(len(texts))

    def apply(text: str) -> ruleversions.Activation:
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as own:
            barrier.wait()
            return ruleversions.apply(own, rules.load(text), message="race", created_by="test")

    with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
        done = list(pool.map(apply, texts))

    assert sorted(a.version for a in done) == list(range(2, 2 + len(texts)))
    # Each activation saw the one before it: the previous numbers chain 1 → 2 → … → 7.
    assert sorted((a.previous, a.version) for a in done) == [
        (v - 1, v) for v in range(2, 2 + len(texts))
    ]
    assert ruleversions.active_number(conn) == 1 + len(texts)
    stored = {v.version: ruleversions.get(conn, v.version).text for v in ruleversions.listing(conn)}
    assert sorted(stored.values()) == sorted([*texts, rules.default_text()])


# -- the claim names the active version; activation waits for claims in flight ---


def _claim(conn, worker_id="w"):
    return queue.claim(conn, worker_id=worker_id, batch_size=10, lease_seconds=30)


def test_a_claim_that_waits_for_an_activation_carries_the_new_version(database_url, conn):
    _insert_event(conn)
    new = rules.load(DISK_RULES)
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as activator,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as claimer,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        activator.execute("BEGIN")
        activator.execute(ruleversions.QUERIES["lock_active"])
        future = pool.submit(_claim, claimer)

        def waiting() -> bool:
            row = conn.execute(
                "SELECT wait_event_type = 'Lock' AS waits FROM pg_stat_activity WHERE pid = %s",
                [claimer.info.backend_pid],
            ).fetchone()
            return bool(row and row["waits"])

        assert poll_until(waiting, timeout=10), "the claim did not wait for the activation"
        stored = activator.execute(
            ruleversions.QUERIES["insert_version"],
            {
                "sha256": ruleversions.sha256(new),
                "rules_text": new.text,
                "message": "",
                "created_by": "t",
            },
        ).fetchone()
        activator.execute(
            ruleversions.QUERIES["activate"],
            {"version": stored["version"], "previous_version": 1, "action": "apply",
             "activated_by": "t"},
        )  # fmt: skip
        activator.execute("COMMIT")
        batch = future.result(timeout=10)
    assert [event.rules_version for event in batch] == [2]


def test_an_activation_waits_for_a_claim_in_flight(database_url, conn):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as claimer:
        _insert_event(conn)
        claimer.execute("BEGIN")
        (event,) = _claim(claimer)
        assert event.rules_version == 1
        with (
            psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as applier,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            future = pool.submit(
                ruleversions.apply, applier, rules.load(DISK_RULES), message="", created_by="t"
            )

            def waiting() -> bool:
                row = conn.execute(
                    "SELECT wait_event_type = 'Lock' AS waits FROM pg_stat_activity WHERE pid = %s",
                    [applier.info.backend_pid],
                ).fetchone()
                return bool(row and row["waits"])

            assert poll_until(waiting, timeout=10), "the activation did not wait for the claim"
            claimer.execute("COMMIT")
            assert future.result(timeout=10).version == 2


def test_the_claim_stays_one_statement_reading_the_active_row():
    claim = "\n".join(
        line.split("--")[0] for line in QUERIES["claim_events"].splitlines()
    )  # without its comments
    assert ";" not in claim
    assert "FROM active_rule_version FOR KEY SHARE" in claim


# -- workers judge with the claimed version; results record it -------------------


def test_results_record_the_version_that_judged_them(config, conn):
    before = _insert_event(conn)
    with closing_worker(config) as worker:
        assert worker.run_once() == 1
    assert dict(_result(conn, before)) == {
        "status": "completed",
        "severity": "LOW",
        "rule_id": "default",
        "rules_version": 1,
    }
    ruleversions.apply(conn, rules.load(DISK_RULES), message="", created_by="t")
    after = _insert_event(conn)
    with closing_worker(config) as worker:
        assert worker.run_once() == 1
    assert dict(_result(conn, after)) == {
        "status": "completed",
        "severity": "CRITICAL",
        "rule_id": "disk_full.critical",
        "rules_version": 2,
    }
    assert _result(conn, before)["rules_version"] == 1, "stored results keep their number"


def test_events_of_one_batch_judged_by_one_rule_keep_their_own_texts(config, conn):
    """Placeholders make one rule's verdicts differ: each event's result has its own values."""
    ruleversions.apply(conn, rules.load(DISK_RULES), message="", created_by="t")
    hosts = ["db1", "db2", "db3"]
    ids = [_insert_event(conn, payload={"percent": 95, "host": h}) for h in hosts]
    with closing_worker(config) as worker:
        assert worker.run_once() == 3  # one batch
    reasons = conn.execute(
        "SELECT classification_reason FROM event_processing_results"
        " WHERE event_id = ANY(%s) ORDER BY event_id",
        [sorted(ids)],
    ).fetchall()
    assert [r["classification_reason"] for r in reasons] == [
        f"Disk on {h} is 95% full" for _, h in sorted(zip(ids, hosts, strict=True))
    ]


def test_a_worker_pinned_to_a_rule_set_records_its_stored_version(config, conn):
    event_id = _insert_event(conn)
    pinned = rules.load(DISK_RULES)
    worker = Worker(config, rule_set=pinned)
    try:
        assert worker.run_once() == 1
    finally:
        worker.close()
    assert _result(conn, event_id)["rules_version"] == 2
    assert _versions(conn) == [(1, True), (2, False)], "stored, not activated"
    assert ruleversions.get(conn, 2).sha256 == ruleversions.sha256(pinned)


def _activate_unloadable(conn) -> None:
    """A version this release cannot load (as a newer release may store), made active."""
    text = (
        "rules:\n  - id: default\n    severity: LOW\n    reason: r\n"
        "    recommendation: x\n    priority: 3\n"
    )
    conn.execute(
        "INSERT INTO rule_versions (version, sha256, rules_text, created_by)"
        " VALUES (2, repeat('a', 64), %s, 'a newer release')",
        [text],
    )
    conn.execute("UPDATE active_rule_version SET version = 2")


def test_a_worker_that_cannot_load_the_active_version_gives_the_batch_back_and_waits(
    config, conn, caplog
):
    event_id = _insert_event(conn)
    _activate_unloadable(conn)
    with closing_worker(config) as worker:
        assert worker.run_once() == 0
        assert not worker.batch.claiming
        row = conn.execute(
            "SELECT status, attempts, locked_by FROM events WHERE id = %s", [event_id]
        ).fetchone()
        assert dict(row) == {"status": "queued", "attempts": 0, "locked_by": None}
        assert conn.execute("SELECT count(*) AS n FROM event_attempts").fetchone()["n"] == 0
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert errors and "cannot load rule version 2" in errors[0].getMessage()
        assert "priority" in errors[0].getMessage()

        assert worker.run_once() == 0, "it claims nothing while the version is unloadable"
        assert _result(conn, event_id)["status"] == "queued"

        ruleversions.rollback(conn, 1, activated_by="t")
        assert worker.run_once() == 1, "it claims again once the active version loads"
        assert worker.batch.claiming
    assert dict(_result(conn, event_id)) == {
        "status": "completed",
        "severity": "LOW",
        "rule_id": "default",
        "rules_version": 1,
    }


def test_a_version_this_code_cannot_load_is_not_read_again_on_every_poll(conn, database_url):
    from eventflo.rulecache import CannotLoad, RuleCache

    _activate_unloadable(conn)
    cache = RuleCache()
    with pytest.raises(CannotLoad, match="priority"):
        cache.get(conn, 2)
    with psycopg.connect(database_url) as closed:
        pass
    # Versions are immutable: the answer is known without the database.
    with pytest.raises(CannotLoad, match="priority"):
        cache.get(closed, 2)


# -- replay --rules-version-before ------------------------------------------------


def test_replay_rules_version_before_requeues_only_older_verdicts(invoke, config, conn, tmp_path):
    old = _insert_event(conn)
    with closing_worker(config) as worker:
        worker.run_once()
    assert_clean_exit(_apply(invoke, _write(tmp_path, "disk.yaml", DISK_RULES)), 0)
    new = _insert_event(conn)
    with closing_worker(config) as worker:
        worker.run_once()

    dry = invoke("replay", "--status", "completed", "--rules-version-before", "2", "--dry-run")
    assert_clean_exit(dry, 0)
    assert str(old) in dry.output and str(new) not in dry.output
    done = invoke("replay", "--status", "completed", "--rules-version-before", "2", "--yes")
    assert_clean_exit(done, 0)
    assert "requeued 1 event(s)" in done.output
    assert _result(conn, old)["status"] == "queued"
    assert _result(conn, new)["status"] == "completed"
    with closing_worker(config) as worker:
        worker.run_once()
    assert dict(_result(conn, old)) == {
        "status": "completed",
        "severity": "CRITICAL",
        "rule_id": "disk_full.critical",
        "rules_version": 2,
    }


def test_replay_rules_version_before_needs_completed(invoke):
    result = invoke("replay", "--rules-version-before", "2")
    assert result.exit_code == 2
    assert "use it with --status completed" in result.output


# -- the API: validation from the active version, GET /rules ----------------------


def test_the_api_validates_from_the_active_version_and_its_422_names_it(make_app, conn):
    client = make_app().test_client()
    bad = {"event_type": "disk_full", "payload": {"percent": "lots"}}
    assert client.post("/events", json=bad).status_code == 202, "version 1 declares no disk_full"

    ruleversions.apply(conn, rules.load(DISK_RULES), message="", created_by="t")
    response = poll_until(
        lambda: (r := client.post("/events", json=bad)).status_code == 422 and r, timeout=10
    )
    assert response, "the API never validated from version 2"
    problem = assert_problem(response, 422)
    assert problem["errors"]["payload"] == {"percent": ["Must be a finite number."]}
    assert problem["rules_version"] == 2
    assert client.post("/events", json=DISK_EVENT).status_code == 202


def test_the_api_learns_of_a_new_version_by_listen_not_only_by_polling(make_app, conn, monkeypatch):
    monkeypatch.setattr(activerules.ActiveRules, "RECHECK_SECONDS", 3600.0)
    client = make_app().test_client()
    bad = {"event_type": "disk_full", "payload": {}}
    assert client.post("/events", json=bad).status_code == 202  # version 1 loaded and cached
    ruleversions.apply(conn, rules.load(DISK_RULES), message="", created_by="t")
    assert poll_until(lambda: client.post("/events", json=bad).status_code == 422, timeout=10)


def test_get_rules_shows_the_active_version_with_its_fields_and_rules(make_app, conn):
    client = make_app().test_client()
    shipped = client.get("/rules").get_json()
    assert (shipped["version"], shipped["message"]) == (1, "the shipped rules")
    assert shipped["fields"]["payment_failed"]["amount"] == {
        "type": "number",
        "required": False,
        "default": 0,
    }

    ruleversions.apply(conn, rules.load(DISK_RULES), message="disk", created_by="ops")
    body = client.get("/rules").get_json()
    assert {k: body[k] for k in ("version", "message", "created_by")} == {
        "version": 2,
        "message": "disk",
        "created_by": "ops",
    }
    assert body["sha256"] == ruleversions.sha256(rules.load(DISK_RULES))
    assert body["created_at"]
    assert body["fields"]["disk_full"]["percent"] == {
        "type": "number",
        "required": True,
        "default": None,
    }
    assert body["rules"][0] == {
        "id": "disk_full.critical",
        "event_types": ["disk_full"],
        "when": "payload.percent >= 90",
        "severity": "CRITICAL",
        "escalate": True,
        "reason": "Disk on {{payload.host}} is {{payload.percent}}% full",
        "recommendation": "Free space on {{payload.host}}",
    }
    assert body["rules"][-1]["event_types"] is None and body["rules"][-1]["when"] is None


def test_get_events_shows_the_results_rules_version(make_app, config, conn):
    client = make_app().test_client()
    event_id = client.post("/events", json=DISK_EVENT).get_json()["event_id"]
    with closing_worker(dataclasses.replace(config)) as worker:
        worker.run_once()
    assert client.get(f"/events/{event_id}").get_json()["result"]["rules_version"] == 1


def test_the_openapi_document_has_get_rules_and_result_rules_version(make_app):
    spec = make_app().test_client().get("/openapi.json").get_json()
    assert "get" in spec["paths"]["/rules"]
    schemas = spec["components"]["schemas"]
    assert schemas["Result"]["properties"]["rules_version"]["type"] == "integer"
    assert {"version", "sha256", "fields", "rules"} <= schemas["ActiveRules"]["properties"].keys()
