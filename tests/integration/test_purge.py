"""``eventflo purge`` on PostgreSQL: alone, beside a held lock, beside a worker and a replay."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import queue, retention
from eventflo.cli import interaction
from eventflo.worker import Worker
from tests.integration.conftest import assert_clean_exit as _assert_clean_exit
from tests.integration.conftest import cli_env as _env

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"
PURGED = re.compile(
    r"purged (\d+) event\(s\) finished before \S+Z \((\d+) completed, (\d+) failed\)"
)


def _purged(output):
    """(total, completed, failed) from the final line."""
    match = PURGED.search(output.strip().splitlines()[-1])
    assert match, output
    return tuple(int(n) for n in match.groups())


def _uuid7_at(moment):
    """An event id as eventflo_uuidv7() would have made it at ``moment``."""
    millis = int(moment.timestamp() * 1000)
    bits = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64)
    return uuid.UUID(int=bits | (0b10 << 62) | secrets.randbits(62))


def _days_ago(days):
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


def _add(conn, status, *, finished_days_ago=40.0, created_days_ago=None, history=True):
    """An event inserted ``created_days_ago`` and last updated ``finished_days_ago``.

    A completed event gets its result row and a completed attempt, a failed
    one a failed attempt, as the workers would have written them.
    """
    created = _days_ago(created_days_ago if created_days_ago is not None else finished_days_ago)
    updated = _days_ago(finished_days_ago)
    event_id = _uuid7_at(created)
    columns = {
        "queued": "",
        "processing": ", locked_by = 'ghost', locked_until = now() + interval '1 hour',"
        " started_at = now()",
        "completed": ", completed_at = %(updated)s, started_at = %(updated)s",
        "failed": ", error_message = 'rule error: bad payload', started_at = %(updated)s",
    }[status]
    conn.execute(
        "INSERT INTO events (id, event_type, payload, created_at, run_at)"
        " VALUES (%(id)s, 'payment_failed', '{\"amount\": 5}', %(created)s, %(run_at)s)",
        # A queued event waits for tomorrow, so the real worker leaves it queued.
        {"id": event_id, "created": created, "run_at": _days_ago(-1)},
    )
    conn.execute(
        f"UPDATE events SET status = %(status)s, updated_at = %(updated)s{columns}"
        " WHERE id = %(id)s",
        {"id": event_id, "status": status, "updated": updated},
    )
    if history and status in ("completed", "failed"):
        conn.execute(
            "INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, finished_at,"
            " outcome, error) VALUES (%(id)s, 1, 'w', %(at)s, %(at)s, %(outcome)s, %(error)s)",
            {
                "id": event_id,
                "at": updated,
                "outcome": status,
                "error": None if status == "completed" else "rule error: bad payload",
            },
        )
    if history and status == "completed":
        conn.execute(
            "INSERT INTO event_processing_results (event_id, severity, classification_reason,"
            " recommendation, should_escalate, rule_id, processed_at)"
            " VALUES (%s, 'HIGH', 'r', 'r', false, 'payment_failed.default', %s)",
            [event_id, updated],
        )
    return event_id


def _ids(conn, table="events", column="id"):
    return {row[column] for row in conn.execute(f"SELECT {column} FROM {table}").fetchall()}


# -- what goes and what stays ---------------------------------------------


def test_purge_deletes_old_finished_events_with_their_results_and_history(invoke, conn):
    old_completed = _add(conn, "completed")
    old_failed = _add(conn, "failed")
    kept = {
        "old queued": _add(conn, "queued"),
        "old processing": _add(conn, "processing"),
        "completed 10 days ago": _add(conn, "completed", finished_days_ago=10),
        "failed 10 days ago": _add(conn, "failed", finished_days_ago=10),
        # Its age counts from when it finished, not from when it arrived.
        "created 90 days ago, finished yesterday": _add(
            conn, "completed", created_days_ago=90, finished_days_ago=1
        ),
    }

    result = invoke("purge", "--yes")
    _assert_clean_exit(result, 0)
    assert _purged(result.output) == (2, 1, 1)
    assert _ids(conn) == set(kept.values())
    assert old_completed not in _ids(conn, "event_processing_results", "event_id")
    assert not _ids(conn, "event_attempts", "event_id") & {old_completed, old_failed}

    again = invoke("purge", "--yes")
    _assert_clean_exit(again, 0)
    assert "nothing to purge" in again.output


def test_an_event_with_a_pending_delivery_is_kept_until_it_is_sent(invoke, conn):
    waiting = _add(conn, "completed")
    sent = _add(conn, "completed")
    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES ('ops', 'https://x.example/', 'slack')"
    )
    for event_id, status in ((waiting, "pending"), (sent, "delivered")):
        conn.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, result, status, delivered_at)"
            " SELECT id, %s, '{}', %s::delivery_status,"
            " CASE WHEN %s = 'delivered' THEN now() END FROM endpoints",
            [event_id, status, status],
        )

    assert "1 completed" in invoke("purge", "--dry-run").output
    result = invoke("purge", "--yes")
    _assert_clean_exit(result, 0)
    assert _ids(conn) == {waiting}


def test_purge_by_status_and_a_shorter_age(invoke, conn):
    completed = _add(conn, "completed", finished_days_ago=2)
    failed = _add(conn, "failed", finished_days_ago=2)
    young = _add(conn, "failed", finished_days_ago=0.25)  # 6 hours

    result = invoke("purge", "--older-than", "36h", "--status", "failed")
    _assert_clean_exit(result, 0)
    assert _purged(result.output) == (1, 0, 1)
    assert _ids(conn) == {completed, young}
    assert failed not in _ids(conn)

    result = invoke("purge", "--older-than", "300m", "--status", "failed", "--status", "completed")
    _assert_clean_exit(result, 0)
    assert _purged(result.output) == (2, 1, 1)
    assert _ids(conn) == set()


def test_dry_run_counts_and_deletes_nothing(invoke, conn):
    for status in ("completed", "completed", "failed", "queued", "processing"):
        _add(conn, status)
    before = conn.execute("SELECT * FROM events ORDER BY id").fetchall()

    result = invoke("purge", "--dry-run")
    _assert_clean_exit(result, 0)
    assert re.search(
        r"^would purge 3 event\(s\) finished before \S+Z \(2 completed, 1 failed\)$",
        result.output.strip(),
    ), result.output
    assert conn.execute("SELECT * FROM events ORDER BY id").fetchall() == before


def test_above_the_threshold_purge_asks_and_without_yes_deletes_nothing(invoke, conn):
    for _ in range(3):
        _add(conn, "completed")

    for answer in (None, "n\n"):
        refused = invoke("purge", "--confirm-above", "2", input=answer)
        assert refused.exit_code == 1, refused.output
        assert "Delete 3 completed/failed event(s) finished before" in refused.output
        assert "Traceback" not in refused.output
        assert len(_ids(conn)) == 3

    confirmed = invoke("purge", "--confirm-above", "2", input="y\n")
    _assert_clean_exit(confirmed, 0)
    assert _purged(confirmed.output) == (3, 3, 0)

    for _ in range(3):
        _add(conn, "failed")
    unasked = invoke("purge", "--confirm-above", "2", "--yes")
    _assert_clean_exit(unasked, 0)
    assert "?" not in unasked.output
    assert _purged(unasked.output) == (3, 0, 3)


def test_small_batches_delete_everything_and_report_progress_without_a_terminal(
    invoke, conn, monkeypatch
):
    ids = [_add(conn, "completed") for _ in range(7)]
    monkeypatch.setattr(interaction, "PROGRESS_LINE_SECONDS", 0.0)  # a line after every batch

    result = invoke("purge", "--yes", "--batch-size", "3", "--pause", "0.01")
    _assert_clean_exit(result, 0)
    assert [line for line in result.output.splitlines() if line.startswith("purging:")] == [
        "purging: 3 of 7 event(s)",
        "purging: 6 of 7 event(s)",
        "purging: 7 of 7 event(s)",
    ]
    assert _purged(result.output) == (7, 7, 0)
    assert not _ids(conn) & set(ids)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30"], "is not a duration"),
        (["--older-than", "30x"], "is not a duration"),
        (["--older-than", "1.5d"], "is not a duration"),
        (["--older-than", "d"], "is not a duration"),
        (["--older-than", ""], "is not a duration"),
        (["--older-than", "-5d"], "is not a duration"),
        (["--older-than", "0d"], "is not a positive duration"),
        (["--older-than", "0s"], "is not a positive duration"),
        (["--older-than", "99999d"], "is longer than 36500 days"),
        (["--status", "queued"], "'queued' is not one of"),
        (["--status", "processing"], "'processing' is not one of"),
        (["--batch-size", "0"], "--batch-size"),
        (["--pause", "-1"], "--pause"),
    ],
)
def test_bad_options_are_usage_errors_and_delete_nothing(invoke, conn, args, message):
    event_id = _add(conn, "completed")
    result = invoke("purge", "--yes", *args)
    _assert_clean_exit(result, 2)
    assert message in result.output
    assert _ids(conn) == {event_id}


def test_the_python_api_refuses_statuses_in_flight(conn):
    for statuses in (["queued"], ["completed", "processing"], []):
        with pytest.raises(ValueError, match="only completed and failed"):
            retention.select(conn, older_than=dt.timedelta(days=1), statuses=statuses)


def test_an_unreachable_database_is_a_one_line_error(invoke):
    result = invoke("purge", "--yes", env=_env(UNREACHABLE))
    _assert_clean_exit(result, 1)
    assert "database unavailable" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output

    result = invoke("purge", env=_env())
    _assert_clean_exit(result, 2)
    assert "EVENTFLO_DATABASE_URL is not set" in result.output


# -- locks -----------------------------------------------------------------


@pytest.mark.parametrize("lock", ["FOR UPDATE", "FOR KEY SHARE"])
def test_purge_skips_a_locked_event_without_waiting_and_leaves_it_for_the_next_run(
    invoke, conn, database_url, lock
):
    """FOR KEY SHARE is what a worker's attempt insert (its foreign key) holds on an event."""
    events = [_add(conn, "completed") for _ in range(5)]
    held = events[2]
    env = _env(database_url, statement_timeout="3")
    with psycopg.connect(database_url) as holder:
        holder.execute(f"SELECT id FROM events WHERE id = %s {lock}", [held])
        started = time.monotonic()
        result = invoke("purge", "--yes", "--batch-size", "2", env=env)
        elapsed = time.monotonic() - started
        _assert_clean_exit(result, 0)
        assert elapsed < 2.5, f"the purge waited for the lock ({elapsed:.1f} s)"
        assert _purged(result.output) == (4, 4, 0)
        assert result.output.rstrip().endswith(
            "; 1 held by other transactions meanwhile, left for the next run"
        ), result.output
        assert _ids(conn) == {held}
        holder.rollback()

    result = invoke("purge", "--yes", env=env)
    _assert_clean_exit(result, 0)
    assert _purged(result.output) == (1, 1, 0)
    assert "left for the next run" not in result.output
    assert _ids(conn) == set()


# -- plans: a batch stays short however big the table ----------------------


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_a_batch_walks_the_primary_key_and_not_the_table(conn):
    # 20,000 events finished 40 days ago, 20,000 this week.
    for days, n in ((40, 20_000), (3, 20_000)):
        conn.execute(
            "INSERT INTO events (id, event_type, status, completed_at, updated_at, created_at)"
            " SELECT eventflo_uuidv7(), 'bulk', 'completed', t, t, t"
            " FROM (SELECT now() - make_interval(days => %s::int) AS t) AS x,"
            " generate_series(1, %s::int)",
            [days, n],
        )
    conn.execute("ANALYZE events")
    selection = retention.select(conn, older_than=dt.timedelta(days=30), statuses=["completed"])
    # The ids above all carry today's time: give the bound the same, so that
    # the plan is the one a real backlog of old rows gets.
    selection = retention.PurgeSelection(
        statuses=selection.statuses,
        cutoff=selection.cutoff,
        id_bound=_uuid7_at(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)),
    )
    for after_id in (None, _uuid7_at(_days_ago(1))):
        params = {**selection.params(), "after_id": after_id, "batch_size": 1000}
        plan = conn.execute(
            "EXPLAIN (FORMAT JSON) " + retention.QUERIES["purge_batch"], params
        ).fetchone()["QUERY PLAN"][0]["Plan"]
        nodes = list(_plan_nodes(plan))
        assert any(n.get("Index Name") == "events_pkey" for n in nodes), nodes
        assert not any(
            n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events" for n in nodes
        ), nodes


def test_every_foreign_key_to_events_has_an_index_for_the_cascade(conn):
    """Without one, each deleted event would scan the whole child table inside the batch."""
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text AS child, c.conname,
               EXISTS (
                   SELECT 1 FROM pg_index AS i
                   WHERE i.indrelid = c.conrelid
                     AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey
               ) AS indexed
        FROM pg_constraint AS c
        WHERE c.contype = 'f' AND c.confrelid = 'events'::regclass
        """
    ).fetchall()
    assert {row["child"] for row in rows} >= {"event_attempts", "event_processing_results"}
    assert all(row["indexed"] for row in rows), rows


# -- beside workers and a replay -------------------------------------------


AUDIT = """
CREATE TABLE purge_audit (id uuid, status event_status, updated_at timestamptz);
CREATE FUNCTION purge_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO purge_audit VALUES (OLD.id, OLD.status, OLD.updated_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_purge_audit AFTER DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION purge_audit();
"""


def test_purge_beside_a_worker_and_a_replay_deletes_only_old_finished_events(config, conn):
    # Old events of every status, interleaved in id order as real traffic leaves them.
    added = {status: [] for status in ("completed", "failed", "queued", "processing")}
    for i in range(320):
        status = "completed" if i % 3 else "failed"
        if i % 16 == 15:
            status = "queued" if i % 32 == 15 else "processing"
        added[status].append(_add(conn, status))
    completed, failed = added["completed"], added["failed"]
    in_flight = added["queued"] + added["processing"]
    conn.execute(AUDIT)
    # Replayed from the young end while the purge comes from the old end:
    # some are requeued before the purge gets there, some after it deleted them.
    to_replay = sorted(failed[::2])

    worker = Worker(config)
    worker_thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    worker_thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLO_")}
    env["EVENTFLO_DATABASE_URL"] = config.database_url
    purge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventflo",
            "purge",
            "--yes",
            "--batch-size",
            "5",
            "--pause",
            "0.01",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    new, replayed = [], []
    try:
        with psycopg.connect(config.database_url, autocommit=True, row_factory=dict_row) as other:
            deadline = time.monotonic() + 60
            while purge.poll() is None and time.monotonic() < deadline:
                row = other.execute(
                    "INSERT INTO events (event_type, payload) VALUES ('sla_breach',"
                    " '{\"minutes_over\": 40}') RETURNING id"
                ).fetchone()
                new.append(row["id"])
                started = other.execute("SELECT count(*) AS n FROM purge_audit").fetchone()["n"]
                if to_replay and started:
                    event_id = to_replay.pop()
                    if queue.replay(other, [event_id], ["failed"]):
                        replayed.append(event_id)
                time.sleep(0.01)
        out, err = purge.communicate(timeout=60)
        # The worker finishes what it was given: new and replayed events.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = conn.execute(
                "SELECT count(*) AS n FROM events WHERE status IN ('queued', 'processing')"
                " AND id = ANY(%s)",
                [new + replayed],
            ).fetchone()["n"]
            if not busy:
                break
            time.sleep(0.1)
    finally:
        if purge.poll() is None:
            purge.kill()
            purge.communicate()
        worker.stop.set()
        worker_thread.join(timeout=10)
    assert not worker_thread.is_alive(), "the worker did not stop"
    assert purge.returncode == 0, err
    assert "Traceback" not in err, err
    total, _, _ = _purged(out)

    # The race happened both ways.
    assert replayed, "no replay reached an event before the purge did"
    assert len(replayed) < len(failed[::2]) - len(to_replay), "every replay beat the purge"

    # Nothing waiting or in flight was deleted, nothing young; the count is right.
    audit = conn.execute("SELECT * FROM purge_audit").fetchall()
    assert len(audit) == total
    assert {row["status"] for row in audit} <= {"completed", "failed"}
    assert all(row["updated_at"] < _days_ago(30) for row in audit)
    remaining = _ids(conn)
    assert set(in_flight) <= remaining
    assert set(new) <= remaining
    assert set(replayed) <= remaining
    # Every old finished event is gone, with its history; the replayed ones
    # were processed anew, each with one result.
    assert remaining == set(in_flight) | set(new) | set(replayed)
    assert {row["id"] for row in audit} == (set(completed) | set(failed)) - set(replayed)
    statuses = conn.execute(
        "SELECT status, count(*) AS n FROM events WHERE id = ANY(%s) GROUP BY status",
        [new + replayed],
    ).fetchall()
    assert {row["status"]: row["n"] for row in statuses} == {"completed": len(new + replayed)}
    assert _ids(conn, "event_processing_results", "event_id") == set(new) | set(replayed)
    assert _ids(conn, "event_attempts", "event_id") <= remaining
