"""Real signals on real worker processes: SIGKILL loses nothing, SIGTERM is graceful (exit 0).

To catch a real worker *while it holds claims* without racing it, the test
makes the worker's outcome transaction wait on a lock the test holds. The
claim (an UPDATE of ``events``) commits as usual, then the worker waits there
holding committed leases, for as long as the test wants. Where it waits
decides what a kill leaves behind: the completion statement (which records
the attempts) goes out with BEGIN alone, so a worker held there has not sent
its COMMIT yet (``before_commit``); the results follow in the same round trip
as the COMMIT (queue.pipelined_transaction), so a worker held on
``event_processing_results`` has already handed the server its whole outcome.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.e2e.conftest import (
    Api,
    Child,
    alive,
    descendants,
    insert_bulk,
    start_worker,
    status_counts,
    wait_all_completed,
    wait_for,
    wait_listening,
    wait_worker_sessions_gone,
)

pytestmark = pytest.mark.e2e

Conn = psycopg.Connection[dict[str, Any]]


@contextlib.contextmanager
def table_locked(database_url: str, table: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold ``table`` so a worker's outcome transaction waits on it; released on exit."""
    with psycopg.connect(database_url) as blocker:
        blocker.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table)))
        try:
            yield blocker
        finally:
            blocker.rollback()


HOLD_ATTEMPTS_KEY = 4_242_001  # the advisory lock the trigger below waits for


@contextlib.contextmanager
def before_commit(database_url: str) -> Iterator[None]:
    """Workers wait inside their completion statement, before their COMMIT has left the process.

    A row trigger on ``event_attempts`` waits for an advisory lock the test
    holds. The completion writes attempt rows; a rescue with nothing to
    rescue writes none, so it does not wait (a table lock would stop it, and
    with it the worker's first claim). Trigger and lock go on exit.
    """
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION hold_attempts() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN PERFORM pg_advisory_xact_lock_shared({HOLD_ATTEMPTS_KEY}); RETURN NEW; END $$;"
            " CREATE TRIGGER hold_attempts BEFORE INSERT ON event_attempts"
            " FOR EACH ROW EXECUTE FUNCTION hold_attempts()"
        )
        admin.execute("SELECT pg_advisory_lock(%s)", [HOLD_ATTEMPTS_KEY])
        try:
            yield
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", [HOLD_ATTEMPTS_KEY])
            admin.execute("DROP TRIGGER hold_attempts ON event_attempts")
            admin.execute("DROP FUNCTION hold_attempts()")


def held_claims(conn: Conn) -> dict[str, int]:
    """Worker id → leases it holds, once every holder waits on the lock; else empty."""
    rows = conn.execute(
        "SELECT locked_by, count(*) AS n FROM events WHERE status = 'processing' GROUP BY locked_by"
    ).fetchall()
    held = {str(row["locked_by"]): int(row["n"]) for row in rows}
    waiting = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name IN"
        "     (SELECT left('eventflo-worker ' || id, 63) FROM unnest(%s::text[]) AS id)"
        " AND wait_event_type = 'Lock'",
        (sorted(held),),
    ).fetchone()["n"]
    return held if held and waiting == len(held) else {}


def wait_holding_claims(conn: Conn, count: int, workers: int = 1) -> list[str]:
    """Wait until ``workers`` workers hold ``count`` leases each and wait on the lock; their ids."""

    def holders() -> list[str]:
        held = held_claims(conn)
        if len(held) != workers or any(n != count for n in held.values()):
            return []
        return sorted(held)

    return wait_for(
        holders,
        timeout=30,
        what=lambda: f"{workers} worker(s) holding {count} claims each ({status_counts(conn)})",
    )


def wait_signal_received(child: Child, times: int) -> None:
    """Until ``times`` processes logged the graceful-stop message in ``child``'s log."""
    wait_for(
        lambda: child.log().count("received SIGTERM") >= times,
        timeout=10,
        what=f"{times} processes to log that they received SIGTERM",
    )


def attempts_by_event(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    history: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(
        "SELECT event_id::text, attempt, worker_id, outcome::text, error, started_at, finished_at"
        " FROM event_attempts ORDER BY id"
    ).fetchall():
        history.setdefault(row["event_id"], []).append(row)
    return history


def test_sigkill_worker_holding_claims_loses_nothing(children, conn, database_url):
    total = 200
    insert_bulk(conn, total)

    with before_commit(database_url):
        victim = start_worker(children, EVENTFLO_BATCH_SIZE="500", EVENTFLO_LEASE_SECONDS="3")
        (victim_id,) = wait_holding_claims(conn, total)
        assert f":{victim.pid}:" in victim_id, (
            f"claims held by {victim_id}, not by pid {victim.pid}"
        )
        victim.send(signal.SIGKILL)
        assert victim.wait_exit(10) == -signal.SIGKILL

    # Once its server session has noticed the dead client, only the victim's leases are left.
    wait_worker_sessions_gone(conn)
    assert status_counts(conn) == {"processing": total}
    assert conn.execute("SELECT count(*) AS n FROM event_processing_results").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM event_attempts").fetchone()["n"] == 0

    rescuers = [start_worker(children, EVENTFLO_LEASE_SECONDS="3") for _ in range(2)]
    wait_all_completed(conn, total, timeout=30)

    rows = conn.execute(
        "SELECT e.attempts,"
        " (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results"
        " FROM events e"
    ).fetchall()
    assert {(r["attempts"], r["results"]) for r in rows} == {(2, 1)}, (
        "each event: 2 attempts, one result"
    )
    history = attempts_by_event(conn)
    assert len(history) == total
    rescuer_pids = {f":{r.pid}:" for r in rescuers}
    for event_id, (expired, completed) in history.items():
        assert (expired["attempt"], expired["worker_id"], expired["outcome"]) == (
            1,
            victim_id,
            "lease_expired",
        )
        assert victim_id in expired["error"]
        # Rescued only once the 3-second lease had run out.
        assert (expired["finished_at"] - expired["started_at"]).total_seconds() >= 3, event_id
        assert (completed["attempt"], completed["outcome"]) == (2, "completed")
        assert any(pid in completed["worker_id"] for pid in rescuer_pids), completed


def wait_asleep(pid: int) -> None:
    """Until process ``pid`` sleeps: a worker only does once it has sent all it had and waits."""

    def state() -> str:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]

    wait_for(lambda: state() == "S", timeout=10, what=lambda: f"pid {pid} to sleep ({state()})")


def test_a_worker_killed_after_sending_its_outcome_still_completes_it_whole(
    children, conn, database_url
):
    total = 100
    insert_bulk(conn, total)

    with table_locked(database_url, "event_processing_results"):
        victim = start_worker(children, EVENTFLO_BATCH_SIZE="500", EVENTFLO_LEASE_SECONDS="30")
        (victim_id,) = wait_holding_claims(conn, total)
        # Its results wait on the lock, and behind them its COMMIT is already sent.
        wait_asleep(victim.pid)
        victim.send(signal.SIGKILL)
        assert victim.wait_exit(10) == -signal.SIGKILL
        assert status_counts(conn) == {"processing": total}

    # The server finishes the transaction it was handed: all of it, never a part.
    wait_worker_sessions_gone(conn)
    rows = conn.execute(
        "SELECT e.status::text, e.attempts,"
        " (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results"
        " FROM events e"
    ).fetchall()
    outcome = {(r["status"], r["attempts"], r["results"]) for r in rows}
    history = attempts_by_event(conn)
    checks_clients = conn.execute("SHOW client_connection_check_interval").fetchone()
    # A server set to look for dead clients during a wait (off by default)
    # may roll it back instead, if it looks before the lock is released: then
    # nothing of it is left, and the leases are rescued.
    if checks_clients["client_connection_check_interval"] != "0" and outcome == {
        ("processing", 1, 0)
    }:
        assert history == {}
        return
    assert outcome == {("completed", 1, 1)}
    assert len(history) == total
    assert all(
        [(a["worker_id"], a["outcome"]) for a in h] == [(victim_id, "completed")]
        for h in history.values()
    )


def test_sigterm_worker_finishes_the_batch_in_hand_and_exits_zero(children, conn, database_url):
    insert_bulk(conn, 100)
    with before_commit(database_url):
        worker = start_worker(children, EVENTFLO_BATCH_SIZE="500", EVENTFLO_LEASE_SECONDS="30")
        (worker_id,) = wait_holding_claims(conn, 100)
        worker.send(signal.SIGTERM)
        wait_signal_received(worker, 1)
        # Events that arrive after the signal must not be claimed.
        insert_bulk(conn, 50, source="after-sigterm")
    assert worker.wait_exit(10) == 0

    by_source = conn.execute(
        "SELECT source, status::text, attempts, count(*) AS n FROM events"
        " GROUP BY 1, 2, 3 ORDER BY 1"
    ).fetchall()
    assert [(r["source"], r["status"], r["attempts"], r["n"]) for r in by_source] == [
        ("after-sigterm", "queued", 0, 50),
        ("e2e-bulk", "completed", 1, 100),
    ]
    history = attempts_by_event(conn)
    assert len(history) == 100
    assert all(
        [(a["worker_id"], a["outcome"]) for a in h] == [(worker_id, "completed")]
        for h in history.values()
    )
    assert "worker stopped" in worker.log()


def test_sigterm_supervisor_stops_every_worker_process_with_status_zero(
    children, conn, database_url
):
    insert_bulk(conn, 200)
    with before_commit(database_url):
        supervisor = start_worker(
            children, processes=2, EVENTFLO_BATCH_SIZE="50", EVENTFLO_LEASE_SECONDS="30"
        )
        holders = wait_holding_claims(conn, 50, workers=2)
        workers = descendants(supervisor.pid)
        assert {int(h.split(":")[-2]) for h in holders} <= workers, (
            f"{holders} are not processes of {workers}"
        )
        supervisor.send(signal.SIGTERM)
        # The supervisor logs it, then each worker it forwards SIGTERM to.
        wait_signal_received(supervisor, 3)
    assert supervisor.wait_exit(15) == 0
    wait_for(
        lambda: not any(alive(pid) for pid in workers),
        timeout=10,
        what=f"processes {workers} to exit",
    )

    # Each worker finished the batch in hand and claimed nothing more.
    rows = conn.execute(
        "SELECT status::text, attempts, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    assert [(r["status"], r["attempts"], r["n"]) for r in rows] == [
        ("completed", 1, 100),
        ("queued", 0, 100),
    ]
    done_by = conn.execute(
        "SELECT worker_id, count(*) AS n FROM event_attempts GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(r["worker_id"], r["n"]) for r in done_by] == [(h, 50) for h in holders]
    _finish_and_check_each_processed_once(children, conn, 200)


def test_sigterm_while_events_keep_arriving_leaves_no_claim_behind(api, children, conn):
    feeder = _Feeder(api)
    first, second = start_worker(children), start_worker(children)
    wait_listening(conn, 2)
    feeder.start()
    try:
        wait_for(
            lambda: status_counts(conn).get("completed", 0) >= 30,
            timeout=20,
            what="30 events completed",
        )
        first.send(signal.SIGTERM)
        assert first.wait_exit(10) == 0
        done_by_first = status_counts(conn).get("completed", 0)
        # The other worker keeps going while events still arrive.
        wait_for(
            lambda: status_counts(conn).get("completed", 0) >= done_by_first + 20,
            timeout=20,
            what="the remaining worker to complete 20 more events",
        )
        second.send(signal.SIGTERM)
        assert second.wait_exit(10) == 0
        posted_while_stopping = feeder.posted
        wait_for(
            lambda: feeder.posted >= posted_while_stopping + 5,
            timeout=10,
            what="more events posted after both workers stopped",
        )
    finally:
        feeder.stop()

    counts = status_counts(conn)
    assert "processing" not in counts, f"a stopped worker left claims behind: {counts}"
    assert counts.get("queued", 0) > 0 and counts.get("completed", 0) > 0, counts
    # Every event a worker claimed was completed, and its attempt recorded.
    claimed = conn.execute(
        "SELECT status::text, attempts, count(*) AS n FROM events WHERE attempts > 0 GROUP BY 1, 2"
    ).fetchall()
    assert [(r["status"], r["attempts"]) for r in claimed] == [("completed", 1)]
    print(f"\nposted {feeder.posted} events; when both workers had stopped: {counts}")
    _finish_and_check_each_processed_once(children, conn, feeder.posted)


class _Feeder:
    """POSTs events through the API from a thread until stopped."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._error: BaseException | None = None
        self.posted = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                response = self._api.post_event(
                    "sla_breach", {"minutes_over": self.posted % 60}, "feeder"
                )
                assert response.status_code == 202, response.text
                self.posted += 1
        except BaseException as exc:  # re-raised in the test's thread
            self._error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "the feeder did not stop"
        if self._error is not None:
            raise self._error


def _finish_and_check_each_processed_once(children, conn: Conn, total: int) -> None:
    """A fresh worker drains the rest; nothing was claimed twice (abandoned: 2 attempts)."""
    start_worker(children)
    wait_all_completed(conn, total, timeout=30)
    shapes = conn.execute(
        "SELECT DISTINCT e.attempts,"
        " (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results,"
        " (SELECT count(*) FROM event_attempts a"
        "   WHERE a.event_id = e.id AND a.outcome = 'completed') AS done,"
        " (SELECT count(*) FROM event_attempts a WHERE a.event_id = e.id) AS tries"
        " FROM events e"
    ).fetchall()
    assert [(r["attempts"], r["results"], r["done"], r["tries"]) for r in shapes] == [(1, 1, 1, 1)]
