"""A worker whose LISTEN connection is killed reconnects, listens again, and still wakes on NOTIFY.

The poll interval is 30 s, so an event that completes within seconds of its
insert was delivered by a NOTIFY, not found by a poll (``NOTIFY_ONLY_ENV``).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import (
    NOTIFY_ONLY_ENV,
    completes_by_notify,
    start_worker,
    wait_for,
    wait_idle_on_listen,
    wait_listening,
    worker_sessions,
)

pytestmark = pytest.mark.e2e

Conn = psycopg.Connection[dict[str, Any]]


def _listen_pid(conn: Conn, worker_id: str) -> int | None:
    session = worker_sessions(conn).get(worker_id, {}).get("listen")
    return None if session is None else int(session["pid"])


def _terminate(conn: Conn, pid: int) -> None:
    row = conn.execute("SELECT pg_terminate_backend(%s) AS done", (pid,)).fetchone()
    assert row is not None and row["done"], f"could not terminate backend {pid}"


def test_worker_listens_again_after_its_listen_connection_is_terminated(children, conn):
    worker = start_worker(children, **NOTIFY_ONLY_ENV)
    wait_listening(conn, 1)
    (worker_id,) = wait_idle_on_listen(conn, 1)
    _, done_by, before = completes_by_notify(conn)
    assert done_by == worker_id

    for drop in (1, 2):  # twice: the reconnect must leave the listener as good as new
        old_pid = _listen_pid(conn, worker_id)
        assert old_pid is not None
        _terminate(conn, old_pid)

        def replaced(old: int = old_pid) -> int | None:
            pid = _listen_pid(conn, worker_id)
            return pid if pid != old else None

        new_pid = wait_for(
            replaced,
            timeout=10,
            what=f"worker {worker_id} to open a new LISTEN connection (drop {drop})",
        )
        # Its first look after the reconnect is a poll; once that found nothing,
        # only a NOTIFY on the new connection can wake it within seconds.
        assert wait_idle_on_listen(conn, 1) == {worker_id}
        _, done_by, after = completes_by_notify(conn)
        assert done_by == worker_id
        print(
            f"\ndrop {drop}: LISTEN backend {old_pid} -> {new_pid};"
            f" wake-up latency {before * 1000:.0f} ms before, {after * 1000:.0f} ms after"
        )

    assert worker.running(), "the worker exited"
    assert worker.log().count("listener on eventflo_queued lost its connection") == 2
    assert "Traceback" not in worker.log()
