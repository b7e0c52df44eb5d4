"""The workers registry with real processes: a SIGKILLed worker's claims go back before its lease.

The victim claims with a 300-second lease and is killed while it holds the
claims (held before its commit, as in test_crash). Its heartbeats stop; once
it is silent for EVENTFLO_WORKER_TIMEOUT (3 s here), another worker releases
every claim through the registry, well before the lease would have run out,
and the victim shows as silent until it is presumed dead (10 minutes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import (
    ROOT,
    Child,
    alive,
    descendants,
    insert_bulk,
    start_worker,
    status_counts,
    wait_all_completed,
    wait_for,
    wait_worker_sessions_gone,
    worker_sessions,
)
from tests.e2e.test_crash import attempts_by_event, before_commit, held_claims, wait_holding_claims

pytestmark = pytest.mark.e2e

LEASE = 300.0
REGISTRY = {
    "EVENTFLO_LEASE_SECONDS": f"{LEASE:g}",
    "EVENTFLO_HEARTBEAT_SECONDS": "0.5",
    "EVENTFLO_WORKER_TIMEOUT": "3",
}


def workers_cli(env: dict[str, str], *, everything: bool = True) -> dict[str, str]:
    """``eventflo workers --json [--all]`` as an operator runs it: worker id → state."""
    done = subprocess.run(
        [sys.executable, "-m", "eventflo", "workers", "--json", *(["--all"] if everything else [])],
        cwd=ROOT,
        env={**env, **REGISTRY},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return {worker["id"]: worker["state"] for worker in json.loads(done.stdout)["workers"]}


def test_sigkilled_workers_claims_are_released_through_the_registry_before_the_lease(
    children, conn: psycopg.Connection[dict[str, Any]], database_url, child_env
):
    total = 100
    insert_bulk(conn, total)

    with before_commit(database_url):
        victim = start_worker(children, EVENTFLO_BATCH_SIZE="500", **REGISTRY)
        (victim_id,) = wait_holding_claims(conn, total)
        assert f":{victim.pid}:" in victim_id
        victim.send(signal.SIGKILL)
        assert victim.wait_exit(10) == -signal.SIGKILL
    killed = time.monotonic()

    wait_worker_sessions_gone(conn)
    assert status_counts(conn) == {"processing": total}
    wait_for(
        lambda: workers_cli(child_env) == {victim_id: "silent"},
        timeout=15,
        what=lambda: f"the victim to show as silent (now: {workers_cli(child_env)})",
        interval=0.2,
    )

    rescuer = start_worker(children, EVENTFLO_LOG_FORMAT="json", **REGISTRY)
    wait_all_completed(conn, total, timeout=30)
    elapsed = time.monotonic() - killed
    assert elapsed < LEASE / 5, f"released only after {elapsed:.0f} s"
    print(
        f"\nall {total} claims released and completed {elapsed:.1f} s after the kill"
        f" (lease {LEASE:g} s)"
    )

    history = attempts_by_event(conn)
    assert len(history) == total
    for event_id, (released, completed) in history.items():
        assert (released["attempt"], released["worker_id"], released["outcome"]) == (
            1,
            victim_id,
            "lease_expired",
        )
        assert released["error"].startswith(f"lease released: worker {victim_id} silent for ")
        held = (released["finished_at"] - released["started_at"]).total_seconds()
        assert held < LEASE / 5, f"{event_id}: released after {held:.0f} s"
        assert (completed["attempt"], completed["outcome"]) == (2, "completed")
        assert f":{rescuer.pid}:" in completed["worker_id"]

    rescuer_id = next(iter(history.values()))[1]["worker_id"]
    # Nobody saw it die: it shows as silent (it might hang) until it is presumed dead.
    assert workers_cli(child_env, everything=False) == {victim_id: "silent", rescuer_id: "live"}
    assert not [line for line in lines_of(rescuer) if line["message"].startswith("silent worker")]

    lines = lines_of(rescuer)
    rescued = [line for line in lines if line["message"] == "event lease rescued"]
    assert {line["event_id"] for line in rescued} == set(history)
    assert all(
        line["holder_worker_id"] == victim_id
        and line["attempt"] == 1
        and line["status"] == "queued"
        for line in rescued
    )
    completions = [line for line in lines if line["message"] == "event completed"]
    assert {line["event_id"] for line in completions} == set(history)

    rescuer.send(signal.SIGTERM)
    assert rescuer.wait_exit(10) == 0
    assert workers_cli(child_env) == {victim_id: "silent", rescuer_id: "stopped"}


def lines_of(child: Child) -> list[dict[str, Any]]:
    """The JSON log lines of a child started with EVENTFLO_LOG_FORMAT=json.

    Only the ``eventflo`` loggers write JSON; a library's own warning (psycopg
    on a connection cut under it) is plain text and skipped.
    """
    return [json.loads(line) for line in child.log().splitlines() if line.startswith("{")]


# Only the supervisor can explain a release within this test: the lease and the
# silence timeout are both ten minutes.
SUPERVISED = {
    "EVENTFLO_LEASE_SECONDS": "600",
    "EVENTFLO_WORKER_TIMEOUT": "600",
    "EVENTFLO_HEARTBEAT_SECONDS": "1",
    "EVENTFLO_LOG_FORMAT": "json",
}


def test_a_supervisor_releases_the_claims_of_a_worker_process_killed_holding_them(
    children, conn: psycopg.Connection[dict[str, Any]], database_url, child_env
):
    total = 100
    insert_bulk(conn, total)
    # Two processes: with one, `eventflo worker` runs it in place, without a supervisor.
    supervisor = start_worker(children, processes=2, EVENTFLO_BATCH_SIZE="500", **SUPERVISED)

    with before_commit(database_url):
        # Usually one child claims all; two that claim at the same moment split them.
        def all_held() -> dict[str, int]:
            held = held_claims(conn)
            return held if sum(held.values()) == total else {}

        held = wait_for(
            all_held,
            timeout=30,
            what=lambda: f"all {total} claims held before their commit ({status_counts(conn)})",
        )
        victim_id = max(held, key=held.__getitem__)
        victims = held[victim_id]
        victim_pid = int(victim_id.split(":")[-2])
        assert victim_pid in descendants(supervisor.pid)
        # Cut the connection of its outcome transaction: the worker keeps the
        # committed claims in hand, with no transaction open, and reconnects.
        lost = worker_sessions(conn)[victim_id]["worker"]["pid"]
        conn.execute("SELECT pg_terminate_backend(%s)", [lost])

    def idle_again() -> bool:
        session = worker_sessions(conn).get(victim_id, {}).get("worker")
        return bool(
            session
            and session["pid"] != lost
            and session["state"] == "idle"
            and "SET status = 'processing'" in str(session["query"])
        )

    wait_for(idle_again, timeout=15, what="the victim to reconnect and find nothing to claim")
    others = {"completed": total - victims} if victims < total else {}
    wait_for(
        lambda: status_counts(conn) == {"processing": victims, **others},
        timeout=15,
        what=lambda: f"only the victim's {victims} claims in hand ({status_counts(conn)})",
    )

    os.kill(victim_pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_all_completed(conn, total, timeout=60)
    elapsed = time.monotonic() - killed
    # The lease and the silence timeout are 10 minutes here: only the supervisor's
    # release can bring the claims back this soon (a restart takes about 1 s).
    assert elapsed < 20, f"released only after {elapsed:.0f} s"
    assert not alive(victim_pid)
    print(f"\n{victims} claims released, all {total} completed {elapsed:.1f} s after the kill")

    reason = f"lease released: worker {victim_id} reaped: killed by SIGKILL, seen by its supervisor"
    history = {
        event_id: attempts
        for event_id, attempts in attempts_by_event(conn).items()
        if attempts[0]["worker_id"] == victim_id
    }
    assert len(history) == victims
    for released, completed in history.values():
        assert (released["attempt"], released["worker_id"], released["outcome"]) == (
            1,
            victim_id,
            "lease_expired",
        )
        assert released["error"] == reason
        assert (completed["attempt"], completed["outcome"]) == (2, "completed")
        assert completed["worker_id"] != victim_id

    lines = lines_of(supervisor)
    (release,) = [
        line for line in lines if line["message"] == "released the leases of a dead worker"
    ]
    assert (release["worker_id"], release["released"]) == (victim_id, victims)
    rescued = [line for line in lines if line["message"] == "event lease rescued"]
    assert {line["worker_id"] for line in rescued} == {"supervisor"}
    assert {line["event_id"] for line in rescued} == set(history)

    # The dead worker is reaped; the other process and the one started in its place are live.
    def others_live() -> dict[str, str]:
        states = workers_cli(child_env)
        return states if list(states.values()).count("live") == 2 else {}

    states = wait_for(others_live, timeout=30, what="the restarted process to register")
    assert states.pop(victim_id) == "reaped"
    assert list(states.values()) == ["live", "live"]
    assert workers_cli(child_env, everything=False) == states

    supervisor.send(signal.SIGTERM)
    assert supervisor.wait_exit(15) == 0
    assert workers_cli(child_env) == {victim_id: "reaped", **dict.fromkeys(states, "stopped")}
