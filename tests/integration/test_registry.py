"""The worker registry on a real PostgreSQL: rows, heartbeats, stops, states, and the rescue.

A worker's leases go back at once when the registry shows it stopped,
reaped or silent; a live worker's leases, and those of workers the registry
does not know, keep the lease-expiry rule. A dead worker whose leases went
back is reaped: no longer silent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import events, queue, registry, rules
from eventflo.heartbeat import Heartbeat
from eventflo.worker import Worker
from tests import tcp_proxy
from tests.integration.worker_harness import outcome_in_flight, poll_until, running

LONG_LEASE = 300.0
TIMEOUT = 30.0


def _row(conn, worker_id):
    return conn.execute("SELECT * FROM workers WHERE id = %s", [worker_id]).fetchone()


def _insert(conn, count=1, event_type="user_signup"):
    return [
        events.insert(conn, events.NewEvent(event_type, {}, source="tests")).event_id
        for _ in range(count)
    ]


def _claim(conn, worker_id, lease_seconds=LONG_LEASE):
    return queue.claim(conn, worker_id=worker_id, batch_size=100, lease_seconds=lease_seconds)


def _rescue(conn, max_attempts=5, worker_timeout=TIMEOUT):
    return queue.rescue_expired(conn, max_attempts=max_attempts, worker_timeout=worker_timeout)


def _silent_for(conn, worker_id, seconds):
    """Make the registry's row look as if its last heartbeat was ``seconds`` ago."""
    conn.execute(
        "UPDATE workers SET started_at = now() - make_interval(secs => %(s)s + 60),"
        " last_seen_at = now() - make_interval(secs => %(s)s) WHERE id = %(id)s",
        {"s": seconds, "id": worker_id},
    )


def _history(conn, event_id):
    return conn.execute(
        "SELECT attempt, worker_id, outcome::text, error, started_at, finished_at"
        " FROM event_attempts WHERE event_id = %s ORDER BY id",
        [event_id],
    ).fetchall()


# -- the worker's own row ----------------------------------------------------------


def test_a_worker_registers_heartbeats_while_idle_counts_and_records_its_stop(config, conn):
    # A poll interval far longer than the heartbeat: heartbeats must not wait for it.
    settings = dataclasses.replace(
        config, heartbeat_seconds=0.5, worker_timeout=3.0, poll_interval=30.0
    )
    worker = Worker(settings)
    with running(worker):
        row = poll_until(lambda: _row(conn, worker.worker_id), 10)
        assert row is not None, "the worker never registered"
        assert (row["host"], row["pid"]) == (socket.gethostname(), os.getpid())
        assert row["stopped_at"] is None
        assert (row["completed"], row["failed"]) == (0, 0)

        # Idle on LISTEN with a 30 s poll, it still heartbeats every 0.5 s, never a beat late.
        seen = [row["last_seen_at"]]

        def six_heartbeats():
            last = _row(conn, worker.worker_id)["last_seen_at"]
            if last != seen[-1]:
                seen.append(last)
            return len(seen) >= 6

        assert poll_until(six_heartbeats, 10, interval=0.01), f"heartbeats seen: {seen}"
        gaps = [(b - a).total_seconds() for a, b in zip(seen, seen[1:], strict=False)]
        assert max(gaps) < 1.0, f"a heartbeat came late: gaps {gaps}"
        assert min(gaps) > 0.3, f"heartbeats came faster than their interval: gaps {gaps}"

        # Its totals reach the registry with the next heartbeat.
        _insert(conn, 3)
        # Only rows written around the API can have an ill-typed payload: a rule error, failed.
        conn.execute(
            "INSERT INTO events (event_type, payload)"
            " VALUES ('payment_failed', '{\"amount\": \"x\"}')"
        )

        def totals():
            row = _row(conn, worker.worker_id)
            return (row["completed"], row["failed"]) == (3, 1)

        assert poll_until(totals, 10), _row(conn, worker.worker_id)
        assert registry.list_workers(conn, timeout=3.0)[0].state == "live"

    stopped = _row(conn, worker.worker_id)
    assert stopped["stopped_at"] is not None
    assert stopped["stopped_at"] >= stopped["started_at"]
    assert (stopped["completed"], stopped["failed"]) == (3, 1) == (worker.completed, worker.failed)
    assert registry.list_workers(conn, timeout=3.0) == []
    (listed,) = registry.list_workers(conn, timeout=3.0, include_stopped=True)
    assert (listed.id, listed.state) == (worker.worker_id, "stopped")


def test_a_heartbeat_brings_back_a_deleted_row(config, conn):
    worker = Worker(dataclasses.replace(config, heartbeat_seconds=0.2, worker_timeout=2.0))
    with running(worker):
        assert poll_until(lambda: _row(conn, worker.worker_id), 10)
        conn.execute("DELETE FROM workers")
        assert poll_until(lambda: _row(conn, worker.worker_id), 5), "the row never came back"


def test_heartbeats_survive_a_database_outage(config, conn, database_url):
    with tcp_proxy.TcpProxy(tcp_proxy.upstream_of(database_url)) as proxy:
        settings = dataclasses.replace(
            config,
            database_url=tcp_proxy.url_through(database_url, proxy.port),
            heartbeat_seconds=0.2,
            worker_timeout=2.0,
            pool_timeout=1.0,
        )
        worker = Worker(settings)
        with running(worker) as thread:
            assert poll_until(lambda: _row(conn, worker.worker_id), 10), "it never registered"
            proxy.cut()
            # The next heartbeats fail; the worker backs off and retries instead of dying.
            last = _row(conn, worker.worker_id)["last_seen_at"]
            time.sleep(1.0)
            assert thread.is_alive(), "the worker died with the database"
            assert _row(conn, worker.worker_id)["last_seen_at"] == last
            proxy.restore()
            assert poll_until(lambda: _row(conn, worker.worker_id)["last_seen_at"] > last, 20), (
                "no heartbeat after the database came back"
            )
            (event_id,) = _insert(conn)
            assert poll_until(
                lambda: (
                    conn.execute("SELECT status FROM events WHERE id = %s", [event_id]).fetchone()[
                        "status"
                    ]
                    == "completed"
                ),
                20,
            )
    assert _row(conn, worker.worker_id)["stopped_at"] is not None


# -- states, listing, retention -----------------------------------------------------


def test_list_workers_judges_states_and_keeps_finished_workers_for_a_while(conn):
    for worker_id in ("live", "silent", "stopped-recently", "stopped-long-ago", "silent-for-days"):
        registry.register(conn, worker_id=worker_id, host="h", pid=100)
    _silent_for(conn, "silent", 45)
    _silent_for(conn, "silent-for-days", 3 * 86_400)
    conn.execute(
        "UPDATE workers SET started_at = now() - interval '3 hours',"
        " stopped_at = now() - CASE id WHEN 'stopped-recently' THEN interval '10 minutes'"
        "                              ELSE interval '2 hours' END"
        " WHERE id LIKE 'stopped-%'"
    )

    running = registry.list_workers(conn, timeout=TIMEOUT)
    assert {(w.id, w.state) for w in running} == {("live", "live"), ("silent", "silent")}
    silent = next(w for w in running if w.id == "silent")
    assert 45 <= silent.seen_seconds_ago < 60
    everything = registry.list_workers(conn, timeout=TIMEOUT, include_stopped=True)
    assert {(w.id, w.state) for w in everything} == {
        ("live", "live"),
        ("silent", "silent"),
        ("stopped-recently", "stopped"),
    }
    # A shorter timeout makes the live worker silent too: the caller's timeout judges.
    time.sleep(0.1)
    assert {w.state for w in registry.list_workers(conn, timeout=0.05)} == {"silent"}

    # The next worker to register deletes what the listing no longer shows.
    registry.register(conn, worker_id="newcomer", host="h", pid=101)
    remaining = {r["id"] for r in conn.execute("SELECT id FROM workers").fetchall()}
    assert remaining == {"live", "silent", "stopped-recently", "newcomer"}


def test_heartbeat_and_stop_write_absolute_totals(conn):
    registry.register(conn, worker_id="w", host="h", pid=7)
    registry.heartbeat(conn, worker_id="w", completed=10, failed=2)
    registry.heartbeat(conn, worker_id="w", completed=10, failed=2)  # resent: counted once
    assert (_row(conn, "w")["completed"], _row(conn, "w")["failed"]) == (10, 2)
    registry.stop(conn, worker_id="w", completed=12, failed=3)
    row = _row(conn, "w")
    assert (row["completed"], row["failed"]) == (12, 3)
    assert row["stopped_at"] is not None and row["last_seen_at"] >= row["stopped_at"]


@pytest.mark.parametrize(
    ("assignment", "constraint"),
    [
        ("completed = -1", "workers_counts_not_negative"),
        ("failed = -1", "workers_counts_not_negative"),
        ("pid = 0", "workers_pid_positive"),
        ("host = ''", "workers_host_length"),
        ("stopped_at = started_at - interval '1 second'", "workers_stopped_after_start"),
        ("last_seen_at = started_at - interval '1 second'", "workers_seen_after_start"),
    ],
)
def test_the_registry_table_rejects_impossible_rows(conn, assignment, constraint):
    registry.register(conn, worker_id="w", host="h", pid=7)
    with pytest.raises(psycopg.errors.CheckViolation) as excinfo:
        conn.execute(f"UPDATE workers SET {assignment} WHERE id = 'w'")
    assert excinfo.value.diag.constraint_name == constraint


def test_the_heartbeat_registers_first_then_beats_only_when_due_and_records_the_stop(config, conn):
    now = [100.0]
    beat = Heartbeat(
        dataclasses.replace(config, heartbeat_seconds=5.0), worker_id="w", clock=lambda: now[0]
    )
    beat.beat_if_due(conn, completed=0, failed=0)
    assert (_row(conn, "w")["completed"], _row(conn, "w")["pid"]) == (0, os.getpid())
    now[0] += 4.9
    beat.beat_if_due(conn, completed=7, failed=1)  # not due yet: nothing sent
    assert _row(conn, "w")["completed"] == 0
    now[0] += 0.1
    beat.beat_if_due(conn, completed=7, failed=1)
    assert (_row(conn, "w")["completed"], _row(conn, "w")["failed"]) == (7, 1)

    beat.record_stop(lambda: conn, completed=8, failed=1)
    row = _row(conn, "w")
    assert (row["completed"], row["stopped_at"] is not None) == (8, True)


def test_a_worker_that_never_registered_records_no_stop(config):
    def no_database():
        raise AssertionError("asked for a connection with nothing to record")

    Heartbeat(config, worker_id="w").record_stop(no_database, completed=0, failed=0)


# -- the rescue reads the registry ---------------------------------------------------


def test_rescue_releases_a_stopped_workers_leases_at_once(conn):
    registry.register(conn, worker_id="worker-stopped", host="h", pid=1)
    registry.register(conn, worker_id="worker-live", host="h", pid=2)
    stopped_ids = _insert(conn, 2)
    assert len(_claim(conn, "worker-stopped")) == 2
    live_ids = _insert(conn, 2)
    assert len(_claim(conn, "worker-live")) == 2
    unknown_ids = _insert(conn, 1)
    assert len(_claim(conn, "worker-not-registered")) == 1

    assert _rescue(conn) == [], "nobody is gone yet: every lease runs for 300 s"
    registry.stop(conn, worker_id="worker-stopped", completed=0, failed=0)

    rescued = _rescue(conn)
    assert sorted(r["id"] for r in rescued) == sorted(stopped_ids)
    for row in rescued:
        assert (row["status"], row["locked_by"], row["attempts"]) == ("queued", "worker-stopped", 1)
        assert row["reason"] == "lease released: worker worker-stopped stopped"
        assert 0 <= row["held_seconds"] < 60
    for event_id in stopped_ids:
        (entry,) = _history(conn, event_id)
        assert (entry["attempt"], entry["worker_id"], entry["outcome"]) == (
            1,
            "worker-stopped",
            "lease_expired",
        )
        assert entry["error"] == "lease released: worker worker-stopped stopped"
        event = conn.execute("SELECT * FROM events WHERE id = %s", [event_id]).fetchone()
        assert (event["status"], event["locked_by"], event["locked_until"]) == (
            "queued",
            None,
            None,
        )
    held = conn.execute(
        "SELECT id, locked_by FROM events WHERE status = 'processing' ORDER BY id"
    ).fetchall()
    assert {r["id"]: r["locked_by"] for r in held} == {
        **{i: "worker-live" for i in live_ids},
        **{i: "worker-not-registered" for i in unknown_ids},
    }
    assert _rescue(conn) == []


def test_rescue_releases_a_silent_workers_leases_and_says_for_how_long(conn):
    registry.register(conn, worker_id="worker-silent", host="h", pid=1)
    registry.register(conn, worker_id="worker-quiet", host="h", pid=2)
    silent_ids = _insert(conn, 2)
    _claim(conn, "worker-silent")
    quiet_ids = _insert(conn, 1)
    _claim(conn, "worker-quiet")
    _silent_for(conn, "worker-silent", 45)
    _silent_for(conn, "worker-quiet", 10)  # within the timeout: still live

    rescued = _rescue(conn, worker_timeout=TIMEOUT)
    assert sorted(r["id"] for r in rescued) == sorted(silent_ids)
    for row in rescued:
        assert row["reason"].startswith("lease released: worker worker-silent silent for ")
        seconds = int(row["reason"].split("silent for ")[1].removesuffix(" s"))
        assert 45 <= seconds < 60
    assert [
        r["id"]
        for r in conn.execute("SELECT id FROM events WHERE status = 'processing'").fetchall()
    ] == quiet_ids

    # The quiet worker goes silent too once the timeout is shorter than its silence.
    assert [r["id"] for r in _rescue(conn, worker_timeout=5.0)] == quiet_ids


def test_rescue_fails_a_gone_workers_event_that_is_out_of_attempts(conn):
    registry.register(conn, worker_id="worker-stopped", host="h", pid=1)
    (event_id,) = _insert(conn)
    _claim(conn, "worker-stopped")
    registry.stop(conn, worker_id="worker-stopped", completed=0, failed=0)
    (rescued,) = _rescue(conn, max_attempts=1)
    assert rescued["status"] == "failed"
    event = conn.execute("SELECT * FROM events WHERE id = %s", [event_id]).fetchone()
    assert (event["status"], event["error_message"]) == (
        "failed",
        "lease released: worker worker-stopped stopped",
    )


@contextlib.contextmanager
def _other_session(database_url):
    """A second session, as a rescuer or supervisor has; it gives up on a lock after 5 s."""
    with psycopg.connect(
        database_url, autocommit=True, row_factory=dict_row, options="-c lock_timeout=5s"
    ) as session:
        yield session


def _completing(database_url, conn, claimed):
    """worker-a's whole outcome for ``claimed`` (shipped verdicts), held in flight on ``conn``."""
    verdicts = [
        queue.Verdict(c, rules.default().classify(c.event_type, c.source, c.payload))
        for c in claimed
    ]
    return outcome_in_flight(
        database_url,
        conn,
        lambda: queue.finish(
            conn,
            worker_id="worker-a",
            verdicts=verdicts,
            failures=[],
            max_attempts=5,
            backoffs=[],
        ),
    )


def test_rescue_never_touches_a_gone_workers_event_that_has_just_completed(database_url, conn):
    registry.register(conn, worker_id="worker-a", host="h", pid=1)
    (event_id,) = _insert(conn, 1, event_type="system_error")
    claimed = _claim(conn, "worker-a")
    _silent_for(conn, "worker-a", 120)  # gone by the registry, while its completion is in flight
    with _other_session(database_url) as rescuer:
        with _completing(database_url, conn, claimed) as finishing:
            assert _rescue(rescuer) == []  # the row is locked: skipped, not waited for
        assert finishing.result(timeout=10).completed == [event_id]
        assert _rescue(rescuer) == []  # committed: completed, nothing to release
    event = conn.execute("SELECT status FROM events WHERE id = %s", [event_id]).fetchone()
    assert event["status"] == "completed"
    assert [h["outcome"] for h in _history(conn, event_id)] == ["completed"]


def test_a_released_worker_that_comes_back_writes_nothing_for_what_it_lost(conn):
    registry.register(conn, worker_id="worker-a", host="h", pid=1)
    (event_id,) = _insert(conn)
    claimed = _claim(conn, "worker-a")
    _silent_for(conn, "worker-a", 120)
    assert [r["id"] for r in _rescue(conn)] == [event_id]
    assert [c.attempt for c in _claim(conn, "worker-b")] == [2]

    # worker-a was only partitioned: it heartbeats again (live) and finishes late.
    registry.heartbeat(conn, worker_id="worker-a", completed=0, failed=0)
    assert registry.list_workers(conn, timeout=TIMEOUT)[0].state == "live"
    verdicts = [
        queue.Verdict(c, rules.default().classify(c.event_type, c.source, c.payload))
        for c in claimed
    ]
    finished = queue.finish(
        conn, worker_id="worker-a", verdicts=verdicts, failures=[], max_attempts=5, backoffs=[]
    )
    assert finished == queue.Finished(completed=[], retried=[], failed=[])
    event = conn.execute(
        "SELECT status, locked_by FROM events WHERE id = %s", [event_id]
    ).fetchone()
    assert (event["status"], event["locked_by"]) == ("processing", "worker-b")


def test_a_running_worker_releases_a_silent_workers_claims_long_before_the_lease(config, conn):
    registry.register(conn, worker_id="dead-worker", host="elsewhere", pid=4242)
    (event_id,) = _insert(conn, 1, event_type="sla_breach")
    _claim(conn, "dead-worker", lease_seconds=LONG_LEASE)
    _silent_for(conn, "dead-worker", 10)
    settings = dataclasses.replace(
        config, heartbeat_seconds=0.5, worker_timeout=3.0, lease_seconds=LONG_LEASE
    )
    worker = Worker(settings)
    started = time.monotonic()
    with running(worker):
        done = poll_until(
            lambda: (
                conn.execute("SELECT status FROM events WHERE id = %s", [event_id]).fetchone()[
                    "status"
                ]
                == "completed"
            ),
            10,
        )
        assert done, "the silent worker's claim was not released"
    assert time.monotonic() - started < 10
    first, second = _history(conn, event_id)
    assert (first["worker_id"], first["outcome"]) == ("dead-worker", "lease_expired")
    assert first["error"].startswith("lease released: worker dead-worker silent for ")
    assert (second["worker_id"], second["outcome"]) == (worker.worker_id, "completed")
    # Its lease released, it still shows as silent: it may hang rather than be dead.
    (dead,) = [w for w in registry.list_workers(conn, timeout=3.0) if w.pid == 4242]
    assert (dead.state, dead.reaped_reason) == ("silent", None)


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def test_rescue_reads_the_lease_index_not_the_table(conn):
    conn.execute(
        "INSERT INTO events (event_type, status, completed_at)"
        " SELECT 'bulk_done', 'completed', now() FROM generate_series(1, 20000)"
    )
    registry.register(conn, worker_id="worker-live", host="h", pid=1)
    _insert(conn, 50)
    _claim(conn, "worker-live")
    conn.execute("ANALYZE")
    row = conn.execute(
        "EXPLAIN (FORMAT JSON) " + queue.QUERIES["rescue_expired"],
        {"max_attempts": 5, "worker_timeout": TIMEOUT, "limit": 1000, "holder": None},
    ).fetchone()
    nodes = list(_plan_nodes(row["QUERY PLAN"][0]["Plan"]))
    assert any(n.get("Index Name") == "events_lease_idx" for n in nodes), nodes
    assert not any(
        n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events" for n in nodes
    ), nodes


# -- dead workers are reaped, not left silent ------------------------------------------

KILLED = "killed by SIGKILL, seen by its supervisor"


def _states(conn, timeout=TIMEOUT):
    return {
        w.id: (w.state, w.reaped_reason)
        for w in registry.list_workers(conn, timeout=timeout, include_stopped=True)
    }


def test_a_reaped_workers_leases_go_back_at_once_and_only_its_own(conn):
    for pid, worker_id in enumerate(("worker-dead", "worker-live"), start=1):
        registry.register(conn, worker_id=worker_id, host="h", pid=pid)
    dead_ids = _insert(conn, 3)
    _claim(conn, "worker-dead")
    live_ids = _insert(conn, 2)
    _claim(conn, "worker-live")
    _silent_for(conn, "worker-live", 120)  # gone too, but not the one being released

    assert registry.reap(conn, worker_id="worker-dead", reason=KILLED)
    rescued = queue.rescue_expired(
        conn, max_attempts=5, worker_timeout=TIMEOUT, holder="worker-dead"
    )

    assert sorted(r["id"] for r in rescued) == sorted(dead_ids)
    reason = f"lease released: worker worker-dead reaped: {KILLED}"
    for event_id in dead_ids:
        (entry,) = _history(conn, event_id)
        assert (entry["attempt"], entry["worker_id"], entry["outcome"], entry["error"]) == (
            1,
            "worker-dead",
            "lease_expired",
            reason,
        )
    statuses = conn.execute("SELECT id, status::text, attempts FROM events").fetchall()
    assert {r["id"]: (r["status"], r["attempts"]) for r in statuses} == {
        **{i: ("queued", 1) for i in dead_ids},
        **{i: ("processing", 1) for i in live_ids},
    }
    assert _states(conn) == {
        "worker-dead": ("reaped", KILLED),
        "worker-live": ("silent", None),
    }
    assert [w.id for w in registry.list_workers(conn, timeout=TIMEOUT)] == ["worker-live"]


def test_a_reaped_workers_event_out_of_attempts_fails(conn):
    registry.register(conn, worker_id="worker-dead", host="h", pid=1)
    (event_id,) = _insert(conn)
    _claim(conn, "worker-dead")
    registry.reap(conn, worker_id="worker-dead", reason=KILLED)
    (rescued,) = queue.rescue_expired(
        conn, max_attempts=1, worker_timeout=TIMEOUT, holder="worker-dead"
    )
    assert rescued["status"] == "failed"
    event = conn.execute("SELECT status::text, error_message FROM events").fetchone()
    assert (event["status"], event["error_message"]) == (
        "failed",
        f"lease released: worker worker-dead reaped: {KILLED}",
    )


def test_releasing_a_reaped_workers_leases_never_touches_an_outcome_in_flight(database_url, conn):
    registry.register(conn, worker_id="worker-a", host="h", pid=1)
    (event_id,) = _insert(conn, 1, event_type="system_error")
    claimed = _claim(conn, "worker-a")
    with _other_session(database_url) as supervisor:
        with _completing(database_url, conn, claimed) as finishing:
            # The process died right after handing the server its whole outcome.
            assert registry.reap(supervisor, worker_id="worker-a", reason=KILLED)
            release = {"max_attempts": 5, "worker_timeout": TIMEOUT, "holder": "worker-a"}
            assert queue.rescue_expired(supervisor, **release) == []  # locked: skipped
        assert finishing.result(timeout=10).completed == [event_id]
        assert queue.rescue_expired(supervisor, **release) == []  # completed: nothing left
    event = conn.execute("SELECT status::text FROM events").fetchone()
    assert event["status"] == "completed"
    assert [h["outcome"] for h in _history(conn, event_id)] == ["completed"]


def test_reaping_keeps_a_graceful_stop_and_a_heartbeat_brings_a_worker_back(conn):
    registry.register(conn, worker_id="worker-stopped", host="h", pid=1)
    registry.stop(conn, worker_id="worker-stopped", completed=3, failed=0)
    assert not registry.reap(conn, worker_id="worker-stopped", reason=KILLED)
    assert not registry.reap(conn, worker_id="never-registered", reason=KILLED)
    registry.register(conn, worker_id="worker-back", host="h", pid=2)
    registry.reap(conn, worker_id="worker-back", reason=KILLED)
    assert _states(conn) == {
        "worker-stopped": ("stopped", None),
        "worker-back": ("reaped", KILLED),
    }

    registry.heartbeat(conn, worker_id="worker-back", completed=0, failed=0)
    assert _states(conn)["worker-back"] == ("live", None)
    assert _row(conn, "worker-back")["stopped_at"] is None


def test_a_silent_worker_is_reaped_only_once_it_holds_no_lease_and_is_presumed_dead(conn):
    workers = ("holding", "empty-handed", "recently-silent", "live")
    for pid, worker_id in enumerate(workers, start=1):
        registry.register(conn, worker_id=worker_id, host="h", pid=pid)
    _insert(conn, 2)
    _claim(conn, "holding")
    dead_for = registry.PRESUMED_DEAD_SECONDS + 100
    _silent_for(conn, "holding", dead_for)
    _silent_for(conn, "empty-handed", dead_for)
    _silent_for(conn, "recently-silent", 45)  # may hang rather than be dead: stays silent

    (reaped,) = registry.reap_silent(conn, timeout=TIMEOUT)
    assert reaped["id"] == "empty-handed"
    seconds = int(reaped["reaped_reason"].removeprefix("silent for ").removesuffix(" s"))
    assert dead_for <= seconds < dead_for + 15
    assert _states(conn)["holding"] == ("silent", None), "still holds leases: truly silent"

    assert len(_rescue(conn)) == 2
    assert [r["id"] for r in registry.reap_silent(conn, timeout=TIMEOUT)] == ["holding"]
    assert {w_id: state for w_id, (state, _) in _states(conn).items()} == {
        "holding": "reaped",
        "empty-handed": "reaped",
        "recently-silent": "silent",
        "live": "live",
    }
    assert registry.reap_silent(conn, timeout=TIMEOUT) == []


def test_reaped_workers_are_listed_with_the_stopped_ones_and_say_why(conn):
    registry.register(conn, worker_id="host-a:1:aaaaaa", host="host-a", pid=1)
    registry.register(conn, worker_id="host-a:2:bbbbbb", host="host-a", pid=2)
    registry.register(conn, worker_id="host-a:3:cccccc", host="host-a", pid=3)
    registry.stop(conn, worker_id="host-a:2:bbbbbb", completed=0, failed=0)
    registry.reap(conn, worker_id="host-a:3:cccccc", reason=KILLED)

    running = registry.list_workers(conn, timeout=TIMEOUT)
    assert registry.render(running, timeout=TIMEOUT).splitlines()[0] == (
        "1 live, 0 silent (no heartbeat for over 30 s)"
    )
    everything = registry.list_workers(conn, timeout=TIMEOUT, include_stopped=True)
    lines = registry.render(everything, timeout=TIMEOUT).splitlines()
    assert lines[0] == (
        "1 live, 0 silent (no heartbeat for over 30 s), 1 stopped and 1 reaped less than 1 h ago"
    )
    (reaped_line,) = [line for line in lines if line.startswith("host-a:3:cccccc")]
    assert reaped_line.endswith(f"reaped ({KILLED})")
    (entry,) = [w.to_json() for w in everything if w.state == "reaped"]
    assert entry["reaped_reason"] == KILLED and entry["stopped_at"] is not None
