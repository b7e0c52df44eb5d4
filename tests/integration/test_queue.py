"""Queue semantics on a real PostgreSQL: claim, finish, fencing, rescue, replay and back-off.

Every test commits for real: SKIP LOCKED needs two sessions and NOTIFY fires
only on commit.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import random
import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from eventflo import events, queue, rules
from eventflo.sql import QUERIES
from tests.integration.worker_harness import outcome_in_flight

LEASE = 30.0


def _connect(url):
    """A second session; a lock wait fails fast instead of hanging the run."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, options="-c lock_timeout=5s")


def _insert(conn, event_type="payment_failed", payload=None, **columns):
    """One queued event through the store, then any column overrides (run_at, ...)."""
    event_id = events.insert(conn, events.NewEvent(event_type, payload or {})).event_id
    for column, value in columns.items():
        conn.execute(f"UPDATE events SET {column} = %s WHERE id = %s", [value, event_id])
    return event_id


def _bulk_insert(conn, count, event_type="bulk_test"):
    rows = conn.execute(
        "INSERT INTO events (event_type) SELECT %s FROM generate_series(1, %s) RETURNING id",
        [event_type, count],
    ).fetchall()
    return {row["id"] for row in rows}


def _row(conn, event_id):
    return conn.execute("SELECT * FROM events WHERE id = %s", [event_id]).fetchone()


def _history(conn, event_id):
    return conn.execute(
        "SELECT attempt, worker_id, outcome, error FROM event_attempts"
        " WHERE event_id = %s ORDER BY id",
        [event_id],
    ).fetchall()


def _results(conn, event_id):
    return conn.execute(
        "SELECT * FROM event_processing_results WHERE event_id = %s", [event_id]
    ).fetchall()


def _claim(conn, worker_id="worker-a", batch_size=10, lease_seconds=LEASE, not_before=None):
    return queue.claim(
        conn,
        worker_id=worker_id,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
        not_before=not_before,
    )


def _counts(finished):
    """(completed, failed or retried): what a finish wrote."""
    return len(finished.completed), len(finished.retried) + len(finished.failed)


def _complete(conn, claimed, worker_id="worker-a"):
    verdicts = [
        queue.Verdict(c, rules.default().classify(c.event_type, c.source, c.payload))
        for c in claimed
    ]
    return _counts(
        queue.finish(
            conn, worker_id=worker_id, verdicts=verdicts, failures=[], max_attempts=5, backoffs=[]
        )
    )


def _fail(conn, claimed, *, worker_id="worker-a", permanent, max_attempts=5, backoff=30.0):
    failures = [
        queue.Failure(c, f"boom on attempt {c.attempt}", permanent=permanent) for c in claimed
    ]
    return _counts(
        queue.finish(
            conn,
            worker_id=worker_id,
            verdicts=[],
            failures=failures,
            max_attempts=max_attempts,
            backoffs=[backoff] * len(failures),
        )
    )


def _rescue(conn, max_attempts=5, worker_timeout=30.0):
    return queue.rescue_expired(conn, max_attempts=max_attempts, worker_timeout=worker_timeout)


def _expire_leases(conn):
    conn.execute(
        "UPDATE events SET locked_until = now() - interval '1 second' WHERE status = 'processing'"
    )


# -- claim -----------------------------------------------------------------


def test_claim_takes_the_oldest_due_events_up_to_the_batch_size_and_leases_them(conn):
    now = conn.execute("SELECT now() AS now").fetchone()["now"]
    due = [_insert(conn, run_at=now - dt.timedelta(minutes=m)) for m in (5, 50, 20, 40, 30)]
    future = _insert(conn, run_at=now + dt.timedelta(hours=1))
    oldest_first = [due[1], due[3], due[4], due[2], due[0]]

    first = _claim(conn, batch_size=3)

    assert {c.event_id for c in first} == set(oldest_first[:3])
    assert all(c.attempt == 1 for c in first)
    for claimed in first:
        row = _row(conn, claimed.event_id)
        assert row["status"] == "processing"
        assert row["attempts"] == 1
        assert row["locked_by"] == "worker-a"
        assert row["started_at"] is not None
        assert row["locked_until"] - row["started_at"] == dt.timedelta(seconds=LEASE)
        assert abs(row["started_at"] - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)

    second = _claim(conn, batch_size=3)
    assert {c.event_id for c in second} == set(oldest_first[3:])
    assert _claim(conn, batch_size=3) == []
    assert _row(conn, future)["status"] == "queued"
    assert _row(conn, future)["attempts"] == 0


def test_claim_returns_the_event_data_the_rules_need(conn):
    event_id = _insert(conn, "sla_breach", {"minutes_over": 12})
    (claimed,) = _claim(conn)
    assert (claimed.event_id, claimed.event_type, claimed.payload) == (
        event_id,
        "sla_breach",
        {"minutes_over": 12},
    )


def test_claim_is_exactly_the_batch_size_while_enough_events_are_due(conn):
    _bulk_insert(conn, 25)
    sizes = [len(_claim(conn, batch_size=10)) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


def test_two_sessions_skip_each_others_locked_rows(database_url, conn):
    ids = [_insert(conn) for _ in range(4)]
    with _connect(database_url) as session_a, _connect(database_url) as session_b:
        with session_a.transaction():
            # A's claim is not committed yet: its rows stay locked.
            claimed_a = _claim(session_a, "worker-a", batch_size=2)
            claimed_b = _claim(session_b, "worker-b", batch_size=2)
            assert {c.event_id for c in claimed_a} == set(ids[:2])
            assert {c.event_id for c in claimed_b} == set(ids[2:])
            # B did not wait for A, and nothing is left for a third claimer.
            assert _claim(session_b, "worker-c", batch_size=2) == []
        assert _claim(session_b, "worker-c", batch_size=2) == []
    owners = conn.execute(
        "SELECT locked_by, count(*) AS n FROM events GROUP BY locked_by ORDER BY locked_by"
    ).fetchall()
    assert [(r["locked_by"], r["n"]) for r in owners] == [("worker-a", 2), ("worker-b", 2)]


def test_parallel_claimers_get_disjoint_sets_covering_every_event(database_url, conn):
    all_ids = _bulk_insert(conn, 500)
    threads, batch_size = 8, 7
    barrier = threading.Barrier(threads)

    def claimer(index):
        worker_id = f"worker-{index}"
        claims = []
        with _connect(database_url) as session:
            barrier.wait(timeout=10)
            while batch := _claim(session, worker_id, batch_size=batch_size):
                claims.append([c.event_id for c in batch])
        return worker_id, claims

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(claimer, range(threads), timeout=60))

    claims = [claim for _, per_worker in outcomes for claim in per_worker]
    claimed = [event_id for claim in claims for event_id in claim]
    assert len(claimed) == len(set(claimed)) == 500
    assert set(claimed) == all_ids
    # Never more than asked; a short claim only happens once the queue runs dry,
    # so there is at most one per claimer.
    assert max(len(claim) for claim in claims) == batch_size
    assert sum(1 for claim in claims if len(claim) < batch_size) <= threads
    # The database agrees with what each claimer was told.
    owners = conn.execute(
        "SELECT locked_by, count(*) AS n FROM events WHERE status = 'processing' GROUP BY locked_by"
    ).fetchall()
    assert {r["locked_by"]: r["n"] for r in owners} == {
        worker_id: sum(len(c) for c in per_worker)
        for worker_id, per_worker in outcomes
        if per_worker
    }
    assert conn.execute("SELECT count(*) AS n FROM events WHERE attempts <> 1").fetchone()["n"] == 0


def _plan_nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def _claim_plan(conn):
    row = conn.execute(
        "EXPLAIN (FORMAT JSON) " + QUERIES["claim_events"],
        {"worker_id": "explain", "batch_size": 10, "lease_seconds": LEASE, "not_before": None},
    ).fetchone()
    return list(_plan_nodes(row["QUERY PLAN"][0]["Plan"]))


def test_claim_uses_its_partial_index_and_not_a_scan_of_the_table(conn):
    conn.execute(
        "INSERT INTO events (event_type, status, completed_at)"
        " SELECT 'bulk_done', 'completed', now() FROM generate_series(1, 20000)"
    )
    _bulk_insert(conn, 50)
    conn.execute("ANALYZE events")

    nodes = _claim_plan(conn)
    assert any(n.get("Index Name") == "events_claim_idx" for n in nodes), nodes
    assert not any(
        n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events" for n in nodes
    ), nodes

    # The assertion above is what breaks if the index goes: prove it here.
    conn.execute("DROP INDEX events_claim_idx")
    conn.execute("ANALYZE events")
    nodes = _claim_plan(conn)
    assert not any(n.get("Index Name") == "events_claim_idx" for n in nodes)
    assert any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events" for n in nodes)


def _claim_buffers(conn, not_before):
    """Shared buffers the claim's index scan touches (a deterministic measure of its work)."""
    plan = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES["claim_events"],
        {
            "worker_id": "explain",
            "batch_size": 10,
            "lease_seconds": LEASE,
            "not_before": not_before,
        },
    ).fetchone()["QUERY PLAN"][0]["Plan"]
    (scan,) = [n for n in _plan_nodes(plan) if n.get("Index Name") == "events_claim_idx"]
    return scan["Shared Hit Blocks"] + scan["Shared Read Blocks"]


def test_under_a_held_snapshot_the_floor_keeps_the_claim_off_the_dead_entries(database_url, conn):
    # One event per millisecond of an hour ago, as separate requests would leave them.
    conn.execute(
        "INSERT INTO events (event_type, run_at)"
        " SELECT 'tick', now() - interval '1 hour' + i * interval '1 ms'"
        " FROM generate_series(1, 20000) AS i"
    )
    conn.execute("VACUUM ANALYZE events")
    with _connect(database_url) as holder, holder.transaction():
        # A REPEATABLE READ snapshot: the entries of claimed events cannot go away.
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM events").fetchone()
        floor = queue.ClaimFloor()
        for _ in range(20):
            batch = _claim(conn, batch_size=500, not_before=floor.not_before())
            floor.claimed(batch)
        # 10,000 dead entries at the front of the index, 10,000 live ones after.
        from_front = _claim_buffers(conn, None)
        from_floor = _claim_buffers(conn, floor.not_before())
    assert from_floor * 5 < from_front, (from_floor, from_front)


def test_an_event_committed_below_the_floor_is_claimed_by_the_next_sweep(conn):
    clock = [0.0]
    floor = queue.ClaimFloor(clock=lambda: clock[0])
    now = conn.execute("SELECT now() AS now").fetchone()["now"]
    _insert(conn, run_at=now)
    floor.claimed(_claim(conn, not_before=floor.not_before()))
    # A transaction that stamped its run_at long before it committed.
    late = _insert(conn, run_at=now - dt.timedelta(minutes=5))

    clock[0] += 1.0
    assert _claim(conn, not_before=floor.not_before()) == []
    clock[0] += queue.ClaimFloor.SWEEP_SECONDS
    assert [c.event_id for c in _claim(conn, not_before=floor.not_before())] == [late]


# -- finish ----------------------------------------------------------------


def test_completion_writes_status_result_and_history_in_one_go(database_url, conn):
    event_id = _insert(conn, "payment_failed", {"amount": 1500})
    claimed = _claim(conn)
    with _connect(database_url) as listener:
        listener.execute("LISTEN eventflo_finished")
        assert _complete(conn, claimed) == (1, 0)
        assert [n.channel for n in listener.notifies(timeout=2.0, stop_after=1)] == [
            "eventflo_finished"
        ]

    row = _row(conn, event_id)
    assert row["status"] == "completed"
    assert row["completed_at"] is not None
    assert (row["locked_by"], row["locked_until"], row["error_message"]) == (None, None, None)
    (result,) = _results(conn, event_id)
    assert result["severity"] == "CRITICAL"
    assert result["should_escalate"] is True
    assert result["rule_id"] == "payment_failed.large"
    assert _history(conn, event_id) == [
        {"attempt": 1, "worker_id": "worker-a", "outcome": "completed", "error": None}
    ]


@pytest.fixture
def results_refused(conn):
    """The database refuses every result row, after the completion has already run."""
    conn.execute(
        "CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'results are refused'; END $$;"
        " CREATE TRIGGER refuse_results BEFORE INSERT ON event_processing_results"
        " FOR EACH ROW EXECUTE FUNCTION refuse_results()"
    )
    yield
    conn.execute("DROP TRIGGER refuse_results ON event_processing_results")
    conn.execute("DROP FUNCTION refuse_results()")


def test_an_outcome_that_fails_midway_writes_nothing_and_leaves_the_connection_usable(
    conn, results_refused
):
    event_id = _insert(conn, "payment_failed", {"amount": 1500})
    claimed = _claim(conn)

    with pytest.raises(psycopg.errors.RaiseException, match="results are refused"):
        _complete(conn, claimed)

    # The completion ran before the refused insert; the whole transaction is gone.
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    row = _row(conn, event_id)
    assert (row["status"], row["locked_by"]) == ("processing", "worker-a")
    assert row["completed_at"] is None
    assert _results(conn, event_id) == []
    assert _history(conn, event_id) == []
    # Still held, so a later outcome (here a failure) lands normally on the same connection.
    assert _fail(conn, claimed, permanent=True) == (0, 1)
    assert _row(conn, event_id)["status"] == "failed"


def test_an_outcome_is_never_written_inside_a_callers_transaction(conn):
    event_id = _insert(conn)
    claimed = _claim(conn)

    refused = pytest.raises(psycopg.ProgrammingError, match="outside any transaction")
    with refused, conn.transaction():
        conn.execute("UPDATE events SET source = 'caller' WHERE id = %s", [event_id])
        _complete(conn, claimed)

    # Neither the caller's write nor the outcome landed; the event is still held.
    row = _row(conn, event_id)
    assert (row["status"], row["source"]) == ("processing", None)
    assert _history(conn, event_id) == []


def test_a_rule_error_fails_the_event_at_once(conn):
    event_id = _insert(conn)
    claimed = _claim(conn)
    assert _fail(conn, claimed, permanent=True, max_attempts=5) == (0, 1)

    row = _row(conn, event_id)
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert row["error_message"] == "boom on attempt 1"
    assert row["locked_by"] is None
    assert _results(conn, event_id) == []
    assert _history(conn, event_id) == [
        {"attempt": 1, "worker_id": "worker-a", "outcome": "failed", "error": "boom on attempt 1"}
    ]


def test_an_unexpected_error_retries_after_a_back_off_then_fails_after_max_attempts(conn):
    event_id = _insert(conn)
    assert _fail(conn, _claim(conn), permanent=False, max_attempts=2, backoff=30.0) == (0, 1)

    row = _row(conn, event_id)
    assert row["status"] == "queued"
    assert row["error_message"] == "boom on attempt 1"
    assert row["locked_by"] is None
    assert row["run_at"] - row["updated_at"] == dt.timedelta(seconds=30)
    assert _claim(conn) == [], "an event waiting out its back-off must not be claimed"

    conn.execute("UPDATE events SET run_at = now() WHERE id = %s", [event_id])  # skip the wait
    second = _claim(conn)
    assert [c.attempt for c in second] == [2]
    assert _fail(conn, second, permanent=False, max_attempts=2) == (0, 1)

    row = _row(conn, event_id)
    assert row["status"] == "failed"
    assert row["attempts"] == 2
    assert row["error_message"] == "boom on attempt 2"
    assert [(h["attempt"], h["outcome"]) for h in _history(conn, event_id)] == [
        (1, "retried"),
        (2, "failed"),
    ]


def test_a_worker_that_lost_its_lease_writes_nothing(conn):
    event_id = _insert(conn, "system_error")
    claimed_a = _claim(conn, "worker-a")
    _expire_leases(conn)
    assert [r["id"] for r in _rescue(conn)] == [event_id]
    claimed_b = _claim(conn, "worker-b")
    assert [c.attempt for c in claimed_b] == [2]

    # A wakes up late: neither its verdict nor its failure lands.
    assert _complete(conn, claimed_a, "worker-a") == (0, 0)
    assert _fail(conn, claimed_a, worker_id="worker-a", permanent=True) == (0, 0)
    row = _row(conn, event_id)
    assert (row["status"], row["locked_by"], row["attempts"]) == ("processing", "worker-b", 2)
    assert _results(conn, event_id) == []

    assert _complete(conn, claimed_b, "worker-b") == (1, 0)
    assert _row(conn, event_id)["status"] == "completed"
    assert len(_results(conn, event_id)) == 1
    assert [(h["attempt"], h["worker_id"], h["outcome"]) for h in _history(conn, event_id)] == [
        (1, "worker-a", "lease_expired"),
        (2, "worker-b", "completed"),
    ]


def test_the_fence_holds_when_a_replay_restarts_the_attempt_count(conn):
    event_id = _insert(conn)
    claimed_a = _claim(conn, "worker-a")
    _expire_leases(conn)
    _rescue(conn, max_attempts=1)  # out of attempts: failed
    assert queue.replay(conn, [event_id], ("failed",)) == 1
    claimed_b = _claim(conn, "worker-b")
    # Same attempt number as A's claim; only the lease owner tells them apart.
    assert [c.attempt for c in claimed_b] == [c.attempt for c in claimed_a] == [1]

    assert _complete(conn, claimed_a, "worker-a") == (0, 0)
    assert _row(conn, event_id)["locked_by"] == "worker-b"
    assert _complete(conn, claimed_b, "worker-b") == (1, 0)


def test_the_same_worker_cannot_finish_an_older_attempt_of_its_own(conn):
    event_id = _insert(conn)
    first = _claim(conn, "worker-a")
    _expire_leases(conn)
    _rescue(conn)
    second = _claim(conn, "worker-a")
    assert _complete(conn, first, "worker-a") == (0, 0)
    assert _complete(conn, second, "worker-a") == (1, 0)
    assert len(_results(conn, event_id)) == 1


# -- rescue ----------------------------------------------------------------


def test_rescue_requeues_an_expired_lease_and_records_the_attempt(conn):
    event_id = _insert(conn)
    _claim(conn, "worker-dead")
    assert _rescue(conn) == [], "a live lease is left alone"
    _expire_leases(conn)

    (rescued,) = _rescue(conn)
    assert (rescued["id"], rescued["status"], rescued["locked_by"]) == (
        event_id,
        "queued",
        "worker-dead",
    )
    row = _row(conn, event_id)
    assert (row["status"], row["locked_by"], row["locked_until"]) == ("queued", None, None)
    (history,) = _history(conn, event_id)
    assert (history["attempt"], history["worker_id"], history["outcome"]) == (
        1,
        "worker-dead",
        "lease_expired",
    )
    assert "lease" in history["error"]
    assert [c.attempt for c in _claim(conn, "worker-b")] == [2]


def test_rescue_fails_an_event_that_is_out_of_attempts(conn):
    event_id = _insert(conn)
    _claim(conn, "worker-dead")
    _expire_leases(conn)

    (rescued,) = _rescue(conn, max_attempts=1)
    assert rescued["status"] == "failed"
    row = _row(conn, event_id)
    assert row["status"] == "failed"
    assert "lease" in row["error_message"] and "worker-dead" in row["error_message"]
    assert [h["outcome"] for h in _history(conn, event_id)] == ["lease_expired"]
    assert _claim(conn) == []


def test_rescue_never_touches_an_event_that_has_just_completed(database_url, conn):
    event_id = _insert(conn)
    claimed = _claim(conn, "worker-a", lease_seconds=-1)  # a lease that has already run out
    with _connect(database_url) as rescuer:
        # The slow worker's outcome is in flight (its row locked) when rescue runs.
        with outcome_in_flight(
            database_url, conn, lambda: _complete(conn, claimed, "worker-a")
        ) as completing:
            assert _rescue(rescuer) == []
        assert completing.result(timeout=10) == (1, 0)
        # Committed: the event is completed and there is nothing to rescue.
        assert _rescue(rescuer) == []
    row = _row(conn, event_id)
    assert row["status"] == "completed"
    assert len(_results(conn, event_id)) == 1
    assert [h["outcome"] for h in _history(conn, event_id)] == ["completed"]


# -- replay ----------------------------------------------------------------


@pytest.fixture
def one_of_each(conn):
    """Four events, one in each status."""
    failed = _insert(conn, "payment_failed", {"amount": 10})
    _fail(conn, _claim(conn, batch_size=1), permanent=True)
    completed = _insert(conn, "payment_failed", {"amount": 20})
    _complete(conn, _claim(conn, batch_size=1))
    processing = _insert(conn, "payment_failed", {"amount": 30})
    _claim(conn, "worker-busy", batch_size=1)
    queued = _insert(
        conn, "payment_failed", {"amount": 40}, run_at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
    )
    statuses = {e: _row(conn, e)["status"] for e in (failed, completed, processing, queued)}
    assert list(statuses.values()) == ["failed", "completed", "processing", "queued"]
    return {"failed": failed, "completed": completed, "processing": processing, "queued": queued}


def test_replay_requeues_failed_events_only_by_default_and_wakes_workers(
    database_url, conn, one_of_each
):
    before = {name: _row(conn, e) for name, e in one_of_each.items()}
    candidates = queue.replay_candidates(conn, queue.ReplaySelection())
    assert candidates == [one_of_each["failed"]]

    with _connect(database_url) as listener:
        listener.execute("LISTEN eventflo_queued")
        assert queue.replay(conn, candidates, ("failed",)) == 1
        assert [n.channel for n in listener.notifies(timeout=2.0, stop_after=1)] == [
            "eventflo_queued"
        ]

    row = _row(conn, one_of_each["failed"])
    assert (row["status"], row["attempts"], row["error_message"]) == ("queued", 0, None)
    assert row["run_at"] <= conn.execute("SELECT now() AS now").fetchone()["now"]
    for name in ("completed", "processing", "queued"):
        assert _row(conn, one_of_each[name]) == before[name], name


def test_replay_never_touches_events_in_flight_even_when_named(conn, one_of_each):
    in_flight = [one_of_each["processing"], one_of_each["queued"]]
    selection = queue.ReplaySelection(statuses=("failed", "completed"), event_ids=tuple(in_flight))
    assert queue.replay_candidates(conn, selection) == []
    before = [_row(conn, e) for e in in_flight]
    assert queue.replay(conn, in_flight, ("failed", "completed")) == 0
    assert [_row(conn, e) for e in in_flight] == before


def test_replay_of_a_completed_event_keeps_one_result_and_replaces_it(conn, one_of_each):
    event_id = one_of_each["completed"]
    (old_result,) = _results(conn, event_id)
    selection = queue.ReplaySelection(statuses=("completed",))
    assert queue.replay_candidates(conn, selection) == [event_id]
    assert queue.replay(conn, [event_id], ("completed",)) == 1

    shown = events.get(conn, event_id)
    assert (shown["status"], shown["attempts"], shown["completed_at"]) == ("queued", 0, None)
    assert shown["result"] is None, "a requeued event shows no result"
    assert len(_results(conn, event_id)) == 1

    claimed = _claim(conn, "worker-b", batch_size=1)
    assert [(c.event_id, c.attempt) for c in claimed] == [(event_id, 1)]
    assert _complete(conn, claimed, "worker-b") == (1, 0)
    (new_result,) = _results(conn, event_id)
    assert new_result["processed_at"] > old_result["processed_at"]
    shown = events.get(conn, event_id)
    assert shown["status"] == "completed"
    assert shown["result"]["processed_at"] == new_result["processed_at"]
    assert [h["outcome"] for h in shown["history"]] == ["completed", "completed"]


def test_a_replayed_completed_event_that_then_fails_keeps_no_old_verdict(conn, one_of_each):
    event_id = one_of_each["completed"]
    assert queue.replay(conn, [event_id], ("completed",)) == 1
    claimed = _claim(conn, "worker-b", batch_size=1)
    assert _fail(conn, claimed, worker_id="worker-b", permanent=True) == (0, 1)

    assert _row(conn, event_id)["status"] == "failed"
    assert _results(conn, event_id) == []


def test_replay_selects_by_type_time_range_and_ids(conn):
    old = _insert(conn, "sla_breach")
    new = _insert(conn, "payment_failed")
    other = _insert(conn, "sla_breach")
    _fail(conn, _claim(conn), permanent=True)
    conn.execute("UPDATE events SET created_at = '2024-01-01T00:00:00Z' WHERE id = %s", [old])

    def pick(**kwargs):
        return queue.replay_candidates(conn, queue.ReplaySelection(**kwargs))

    assert pick() == [old, new, other]
    assert pick(event_type="sla_breach") == [old, other]
    cutoff = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert pick(created_before=cutoff) == [old]
    assert pick(created_after=cutoff) == [new, other]
    assert pick(event_ids=(other, new)) == [new, other]


# -- back-off --------------------------------------------------------------


def test_backoff_is_bounded_by_the_cap_and_grows_with_attempts():
    rng = random.Random(1234)

    def samples(attempt):
        return [queue.backoff_seconds(attempt, base=1.0, cap=60.0, rng=rng) for _ in range(2000)]

    for attempt in (1, 2, 5, 7, 20, 1000):
        values = samples(attempt)
        assert all(0 <= v <= min(60.0, 2 ** (attempt - 1)) for v in values), attempt
    means = [sum(samples(attempt)) / 2000 for attempt in (1, 3, 5, 7)]
    assert means == sorted(means)
    assert means[0] < 1.0 < means[1] < 4.0 < means[2] < 16.0 < means[3] <= 60.0


def test_backoff_is_jittered_and_reproducible_with_a_seed():
    def run(seed):
        rng = random.Random(seed)
        return [queue.backoff_seconds(4, base=1.0, cap=60.0, rng=rng) for _ in range(10)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert len(set(run(7))) == 10, "a batch that failed together must not retry in lockstep"
