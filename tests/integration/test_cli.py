"""The ``eventflo`` command on a real PostgreSQL: migrate, stats, replay, and its error exits."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from eventflo import devstate, registry
from tests import tcp_proxy
from tests.integration.conftest import assert_clean_exit as _assert_clean_exit
from tests.integration.conftest import cli_env as _env
from tests.integration.test_migrations import ALL as ALL_MIGRATIONS

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


def _add(conn, status, event_type="payment_failed", created_at=None):
    columns = {
        "queued": "",
        "processing": ", locked_by = 'worker-x', locked_until = now() + interval '1 hour',"
        " started_at = now()",
        "completed": ", completed_at = now()",
        "failed": ", error_message = 'rule error: bad payload'",
    }[status]
    row = conn.execute(
        "INSERT INTO events (event_type) VALUES (%s) RETURNING id", [event_type]
    ).fetchone()
    conn.execute(f"UPDATE events SET status = %s{columns} WHERE id = %s", [status, row["id"]])
    if created_at is not None:
        conn.execute("UPDATE events SET created_at = %s WHERE id = %s", [created_at, row["id"]])
    return row["id"]


def _statuses(conn):
    return {
        row["id"]: row["status"] for row in conn.execute("SELECT id, status FROM events").fetchall()
    }


# -- migrate ---------------------------------------------------------------


def test_migrate_on_a_migrated_database_applies_nothing(invoke):
    result = invoke("migrate")
    _assert_clean_exit(result, 0)
    assert result.output.strip() == "applied 0 migration(s)"

    result = invoke("migrate", "--list")
    _assert_clean_exit(result, 0)
    assert result.output.strip() == "no pending migrations"


def test_migrate_lists_then_applies_every_migration_on_an_empty_database(
    invoke, empty_database_url
):
    env = _env(empty_database_url)
    listed = invoke("migrate", "--list", env=env)
    _assert_clean_exit(listed, 0)
    assert listed.output.split() == ALL_MIGRATIONS

    applied = invoke("migrate", env=env)
    _assert_clean_exit(applied, 0)
    assert applied.output.strip() == (
        f"applied {len(ALL_MIGRATIONS)} migration(s): {', '.join(ALL_MIGRATIONS)}"
    )
    assert invoke("migrate", "--list", env=env).output.strip() == "no pending migrations"


def test_migrate_rollback_then_reapply(invoke):
    rolled_back = invoke("migrate", "--rollback", "1")
    _assert_clean_exit(rolled_back, 0)
    assert rolled_back.output.strip() == "rolled back 1 migration(s): 0009_endpoints_and_deliveries"
    assert invoke("migrate", "--list").output.split() == ["0009_endpoints_and_deliveries"]
    assert (
        invoke("migrate").output.strip() == "applied 1 migration(s): 0009_endpoints_and_deliveries"
    )


# -- stats -----------------------------------------------------------------


@pytest.fixture
def populated(conn):
    """2 queued (the oldest due for 90 s), 1 processing, 3 completed, 1 failed."""
    old = _add(conn, "queued")
    conn.execute("UPDATE events SET run_at = now() - interval '90 seconds' WHERE id = %s", [old])
    _add(conn, "queued")
    _add(conn, "processing")
    for severity in ("CRITICAL", "CRITICAL", "LOW"):
        event_id = _add(conn, "completed")
        conn.execute(
            "INSERT INTO event_processing_results"
            " (event_id, severity, classification_reason, recommendation, should_escalate, rule_id)"
            " VALUES (%s, %s, 'r', 'x', false, 'rule')",
            [event_id, severity],
        )
    _add(conn, "failed")


def test_stats_json_counts_by_status_and_severity_and_the_oldest_queued_age(invoke, populated):
    result = invoke("stats", "--json")
    _assert_clean_exit(result, 0)
    snapshot = json.loads(result.output)
    assert snapshot["by_status"] == {"queued": 2, "processing": 1, "completed": 3, "failed": 1}
    assert snapshot["by_severity"] == {"LOW": 1, "WARNING": 0, "HIGH": 0, "CRITICAL": 2}
    assert 90 <= snapshot["oldest_queued_age_seconds"] < 150


def test_stats_table_shows_the_same_numbers(invoke, populated):
    result = invoke("stats")
    _assert_clean_exit(result, 0)
    lines = [line.split() for line in result.output.splitlines()]
    for expected in (
        ["queued", "2"],
        ["processing", "1"],
        ["completed", "3"],
        ["failed", "1"],
        ["CRITICAL", "2"],
        ["WARNING", "0"],
        ["LOW", "1"],
    ):
        assert expected in lines, result.output
    oldest = next(line for line in result.output.splitlines() if line.startswith("oldest queued:"))
    assert 90 <= float(oldest.split()[2]) < 150


def test_stats_on_an_empty_queue(invoke):
    result = invoke("stats", "--json")
    _assert_clean_exit(result, 0)
    snapshot = json.loads(result.output)
    assert set(snapshot["by_status"].values()) == {0}
    assert snapshot["oldest_queued_age_seconds"] is None
    assert "oldest queued: none" in invoke("stats").output


# -- stats --watch ---------------------------------------------------------


def _ctrl_c_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def _watching(database_url, *args):
    """``eventflo stats --watch`` as a process; killed at the end if the test left it running."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    env.update(
        EVENTFLO_DATABASE_URL=database_url, EVENTFLO_WORKER_TIMEOUT="30", PYTHONUNBUFFERED="1"
    )
    watch = subprocess.Popen(
        [sys.executable, "-m", "eventflo", "stats", "--watch", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a test run started in the background (`cmd &` in a
        # script) inherits SIGINT ignored, and Python keeps it ignored.
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    try:
        yield watch
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()


def test_stats_watch_refreshes_until_ctrl_c_then_exits_zero(database_url, conn, populated):
    registry.register(conn, worker_id="host-a:11:abcdef", host="host-a", pid=11)
    frames: list[list[str]] = []  # the lines of each refresh, from its header on
    with _watching(database_url, "--interval", "0.2") as watch:
        deadline = time.monotonic() + 30
        while len(frames) < 4:  # the third frame is complete once the fourth begins
            assert time.monotonic() < deadline, f"fewer than 4 refreshes: {frames}"
            line = watch.stdout.readline()
            assert line, f"the watch ended early: {watch.stderr.read()}"
            if line.startswith("eventflo stats "):
                frames.append([])
                if len(frames) == 2:
                    # Printed whole after its queries: the change shows from the third frame on.
                    conn.execute(
                        "UPDATE events SET status = 'failed', error_message = 'x'"
                        " WHERE status = 'queued'"
                    )
            assert frames, f"output before the first header: {line!r}"
            frames[-1].append(line.rstrip("\n"))
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err, err
    first, third = ("\n".join(frame) for frame in (frames[0], frames[2]))
    assert "every 0.2 s" in first
    rows = [line.split() for line in frames[0]]
    for expected in (["queued", "2"], ["processing", "1"], ["failed", "1"], ["CRITICAL", "2"]):
        assert expected in rows, first
    assert "completed/s:   - (since the previous refresh)" in first  # no rate before a 2nd frame
    assert "1 live, 0 silent (no heartbeat for over 30 s)" in first
    assert any(row[:3] == ["host-a:11:abcdef", "host-a", "11"] for row in rows), first
    assert ["failed", "3"] in [line.split() for line in frames[2]], third
    assert "completed/s:   0 (since the previous refresh)" in third
    assert "\033[2J" not in first, "no clearing when stdout is not a terminal"


def test_stats_watch_shows_an_outage_and_recovers_by_itself(database_url):
    with (
        tcp_proxy.TcpProxy(tcp_proxy.upstream_of(database_url)) as proxy,
        _watching(tcp_proxy.url_through(database_url, proxy.port), "--interval", "0.2") as watch,
    ):

        def read_until(text):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = watch.stdout.readline()
                assert line, f"the watch ended: {watch.stderr.read()}"
                if text in line:
                    return
            pytest.fail(f"no {text!r} within 30 s")

        read_until("oldest queued:")
        proxy.cut()
        read_until("database unavailable: ")
        proxy.restore()
        read_until("oldest queued:")
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    assert "Traceback" not in err, err


def test_stats_watch_with_json_is_a_usage_error(invoke):
    result = invoke("stats", "--watch", "--json")
    _assert_clean_exit(result, 2)
    assert "--watch cannot be combined with --json" in result.output
    result = invoke("stats", "--interval", "1")
    _assert_clean_exit(result, 2)
    assert "--interval needs --watch" in result.output


def test_stats_watch_on_an_unreachable_database_is_a_one_line_error():
    with _watching(UNREACHABLE) as watch:
        out, err = watch.communicate(timeout=30)
    assert watch.returncode == 1
    assert out == ""
    assert err.startswith("Error: database unavailable") and len(err.strip().splitlines()) == 1, err


# -- workers ---------------------------------------------------------------


@pytest.fixture
def registered(conn):
    """One live worker, one silent for 2 minutes, one stopped 5 minutes ago."""
    registry.register(conn, worker_id="host-a:11:aaaaaa", host="host-a", pid=11)
    registry.heartbeat(conn, worker_id="host-a:11:aaaaaa", completed=1234, failed=5)
    registry.register(conn, worker_id="host-b:22:bbbbbb", host="host-b", pid=22)
    registry.register(conn, worker_id="host-c:33:cccccc", host="host-c", pid=33)
    conn.execute(
        "UPDATE workers SET started_at = now() - interval '1 hour',"
        " last_seen_at = now() - interval '2 minutes' WHERE id = 'host-b:22:bbbbbb'"
    )
    conn.execute(
        "UPDATE workers SET started_at = now() - interval '1 hour',"
        " stopped_at = now() - interval '5 minutes' WHERE id = 'host-c:33:cccccc'"
    )


def test_workers_lists_live_and_silent_workers(invoke, registered):
    result = invoke("workers")
    _assert_clean_exit(result, 0)
    lines = result.output.splitlines()
    assert lines[0] == "1 live, 1 silent (no heartbeat for over 30 s)"
    assert lines[2].split() == [
        "id",
        "host",
        "pid",
        "started",
        "(UTC)",
        "last",
        "seen",
        "completed",
        "failed",
        "state",
    ]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert set(rows) == {"host-a:11:aaaaaa", "host-b:22:bbbbbb"}
    live = rows["host-a:11:aaaaaa"]
    assert (live[1], live[2], live[-3], live[-2], live[-1]) == (
        "host-a",
        "11",
        "1,234",
        "5",
        "live",
    )
    silent = rows["host-b:22:bbbbbb"]
    assert silent[-1] == "silent"
    assert " ".join(silent[5:8]) == "2 min ago"


def test_workers_all_adds_recently_stopped_ones(invoke, registered):
    result = invoke("workers", "--all")
    _assert_clean_exit(result, 0)
    assert result.output.splitlines()[0] == (
        "1 live, 1 silent (no heartbeat for over 30 s), 1 stopped less than 1 h ago"
    )
    assert "host-c:33:cccccc" in result.output and " stopped" in result.output


def test_workers_json(invoke, database_url, registered):
    result = invoke("workers", "--json", "--all", env=_env(database_url, worker_timeout="60"))
    _assert_clean_exit(result, 0)
    document = json.loads(result.output)
    assert document["worker_timeout_seconds"] == 60.0
    by_id = {w["id"]: w for w in document["workers"]}
    assert {w_id: w["state"] for w_id, w in by_id.items()} == {
        "host-a:11:aaaaaa": "live",
        "host-b:22:bbbbbb": "silent",
        "host-c:33:cccccc": "stopped",
    }
    live = by_id["host-a:11:aaaaaa"]
    assert (live["host"], live["pid"], live["completed"], live["failed"]) == ("host-a", 11, 1234, 5)
    assert live["stopped_at"] is None and 0 <= live["seen_seconds_ago"] < 30
    assert dt.datetime.fromisoformat(by_id["host-c:33:cccccc"]["stopped_at"]).tzinfo is not None
    assert set(live) == {
        "id",
        "host",
        "pid",
        "started_at",
        "last_seen_at",
        "stopped_at",
        "reaped_reason",
        "completed",
        "failed",
        "seen_seconds_ago",
        "state",
    }


def test_workers_on_an_empty_registry(invoke):
    result = invoke("workers")
    _assert_clean_exit(result, 0)
    assert result.output.strip() == (
        "0 live, 0 silent (no heartbeat for over 30 s): no worker is running"
    )
    assert json.loads(invoke("workers", "--json").output)["workers"] == []


def test_workers_on_a_database_without_the_registry_says_to_migrate(invoke):
    assert invoke("migrate", "--rollback", "3").exit_code == 0
    result = invoke("workers")
    _assert_clean_exit(result, 1)
    assert "run: eventflo migrate" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


# -- replay ----------------------------------------------------------------


def test_replay_requeues_failed_events_only_by_default(invoke, conn):
    failed = _add(conn, "failed")
    others = {status: _add(conn, status) for status in ("queued", "processing", "completed")}

    result = invoke("replay")
    _assert_clean_exit(result, 0)
    assert "requeued 1 event(s)" in result.output
    row = conn.execute("SELECT * FROM events WHERE id = %s", [failed]).fetchone()
    assert (row["status"], row["attempts"], row["error_message"]) == ("queued", 0, None)
    assert {status: _statuses(conn)[event_id] for status, event_id in others.items()} == {
        "queued": "queued",
        "processing": "processing",
        "completed": "completed",
    }

    result = invoke("replay")
    _assert_clean_exit(result, 0)
    assert "nothing to replay" in result.output


def test_replay_completed_events_on_request(invoke, conn):
    failed = _add(conn, "failed")
    completed = _add(conn, "completed")
    result = invoke("replay", "--status", "completed")
    _assert_clean_exit(result, 0)
    assert "requeued 1 event(s)" in result.output
    assert _statuses(conn) == {failed: "failed", completed: "queued"}


def test_replay_by_event_type(invoke, conn):
    sla = _add(conn, "failed", "sla_breach")
    payment = _add(conn, "failed", "payment_failed")
    result = invoke("replay", "--event-type", "sla_breach")
    _assert_clean_exit(result, 0)
    assert _statuses(conn) == {sla: "queued", payment: "failed"}


def test_replay_by_time_range(invoke, conn):
    early = _add(conn, "failed", created_at="2025-01-01T00:00:00Z")
    middle = _add(conn, "failed", created_at="2025-06-01T00:00:00Z")
    late = _add(conn, "failed", created_at="2026-01-01T00:00:00Z")
    result = invoke("replay", "--since", "2025-03-01", "--until", "2025-12-01T00:00:00Z")
    _assert_clean_exit(result, 0)
    assert "requeued 1 event(s)" in result.output
    assert _statuses(conn) == {early: "failed", middle: "queued", late: "failed"}


def test_replay_by_ids(invoke, conn):
    first, second, third = (_add(conn, "failed") for _ in range(3))
    result = invoke("replay", "--id", str(first), "--id", str(third))
    _assert_clean_exit(result, 0)
    assert _statuses(conn) == {first: "queued", second: "failed", third: "queued"}


def test_replay_dry_run_lists_and_changes_nothing(invoke, conn):
    ids = [_add(conn, "failed") for _ in range(3)]
    before = conn.execute("SELECT * FROM events ORDER BY id").fetchall()
    result = invoke("replay", "--dry-run")
    _assert_clean_exit(result, 0)
    assert "would replay 3 failed event(s)" in result.output
    assert all(str(event_id) in result.output for event_id in ids)
    assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == before


def test_replay_above_the_threshold_asks_and_without_an_answer_changes_nothing(invoke, conn):
    ids = [_add(conn, "failed") for _ in range(3)]
    result = invoke("replay", "--confirm-above", "2")
    assert result.exit_code != 0
    assert "Replay 3 failed event(s)?" in result.output
    assert "Traceback" not in result.output
    assert set(_statuses(conn).values()) == {"failed"}

    declined = invoke("replay", "--confirm-above", "2", input="n\n")
    assert declined.exit_code != 0
    assert set(_statuses(conn).values()) == {"failed"}

    confirmed = invoke("replay", "--confirm-above", "2", input="y\n")
    _assert_clean_exit(confirmed, 0)
    assert set(_statuses(conn).values()) == {"queued"}
    assert len(ids) == 3


def test_replay_above_the_threshold_with_yes_does_not_ask(invoke, conn):
    for _ in range(3):
        _add(conn, "failed")
    result = invoke("replay", "--confirm-above", "2", "--yes")
    _assert_clean_exit(result, 0)
    assert "?" not in result.output
    assert "requeued 3 event(s)" in result.output
    assert set(_statuses(conn).values()) == {"queued"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", "not-a-uuid"], "is not an event id"),
        (["--since", "yesterday"], "is not an ISO 8601 date"),
        (["--until", "2025-13-45"], "is not an ISO 8601 date"),
        (
            ["--since", "2025-06-01", "--until", "2025-01-01"],
            "--since must be earlier than --until",
        ),
        (["--status", "queued"], "'queued' is not one of"),
        (["--confirm-above", "-1"], "--confirm-above"),
    ],
)
def test_replay_rejects_bad_options_clearly_and_changes_nothing(invoke, conn, args, message):
    failed = _add(conn, "failed")
    result = invoke("replay", *args)
    _assert_clean_exit(result, 2)
    assert message in result.output
    assert _statuses(conn) == {failed: "failed"}


# -- configuration and connection errors ----------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["stats"],
        ["replay"],
        ["replay", "--dry-run"],
        ["migrate"],
        ["migrate", "--list"],
        ["serve"],
        ["workers"],
        ["workers", "--json"],
    ],
)
def test_an_unreachable_database_is_a_one_line_error(invoke, command):
    result = invoke(*command, env=_env(UNREACHABLE))
    _assert_clean_exit(result, 1)
    assert "database unavailable" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "command", [["stats"], ["replay"], ["migrate"], ["worker"], ["serve"], ["workers"]]
)
def test_a_missing_database_url_is_a_usage_error(invoke, command):
    result = invoke(*command, env=_env())
    _assert_clean_exit(result, 2)
    assert "EVENTFLO_DATABASE_URL is not set" in result.output


@pytest.mark.parametrize("command", [["stats"], ["replay"], ["migrate"], ["worker"]])
def test_an_invalid_setting_is_a_usage_error_naming_the_variable(invoke, database_url, command):
    result = invoke(*command, env=_env(database_url, batch_size="abc"))
    _assert_clean_exit(result, 2)
    assert "EVENTFLO_BATCH_SIZE='abc' is invalid" in result.output


def test_replay_of_an_unknown_id_replays_nothing(invoke, conn):
    failed = _add(conn, "failed")
    result = invoke("replay", "--id", str(uuid.uuid4()))
    _assert_clean_exit(result, 0)
    assert "nothing to replay" in result.output
    assert _statuses(conn) == {failed: "failed"}


# -- the database of a running `eventflo dev` -----------------------------


@contextlib.contextmanager
def _dev_running_here(tmp_path, database_url, *, auth=False):
    """The state file a running `eventflo dev` holds in .eventflo/ where `invoke` runs.

    This process holds its lock, as the dev process would.
    """
    data_dir = tmp_path / ".eventflo" / "pgdata"
    with devstate.held(data_dir) as lock:
        lock.write(devstate.DevState(os.getpid(), 8123, str(data_dir), database_url, auth))
        yield


def test_without_a_url_a_command_uses_the_running_dev_database_and_says_so(
    invoke, conn, database_url, tmp_path
):
    _add(conn, "failed")
    with _dev_running_here(tmp_path, database_url):
        result = invoke("stats", "--json", env=_env())
    _assert_clean_exit(result, 0)
    assert json.loads(result.stdout)["by_status"]["failed"] == 1
    assert result.stderr.strip() == (
        f"using the `eventflo dev` database at {database_url}"
        f" (pid {os.getpid()}; EVENTFLO_DATABASE_URL is not set)"
    )


def test_a_set_url_wins_over_the_running_dev(invoke, database_url, tmp_path):
    with _dev_running_here(tmp_path, UNREACHABLE):
        result = invoke("stats", "--json", env=_env(database_url))
    _assert_clean_exit(result, 0)
    assert result.stderr == ""


def test_the_state_file_of_a_dev_that_is_gone_is_not_used(invoke, database_url, tmp_path):
    with _dev_running_here(tmp_path, database_url):
        left = (tmp_path / ".eventflo" / "pgdata.dev.json").read_text()
    # As a SIGKILLed dev leaves it: the file, with nobody holding its lock.
    (tmp_path / ".eventflo" / "pgdata.dev.json").write_text(left)
    result = invoke("stats", env=_env())
    _assert_clean_exit(result, 2)
    assert "EVENTFLO_DATABASE_URL is not set" in result.output
    assert "eventflo dev" not in result.output
