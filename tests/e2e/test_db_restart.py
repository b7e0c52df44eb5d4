"""PostgreSQL restarted (fast and immediate shutdown) under load: 503s, reconnects, nothing lost.

The session's server may be shared, so this test restarts a server of its
own: a container of ``EVENTFLO_TEST_POSTGRES_IMAGE`` when the session's server
comes from testcontainers, else a private cluster made with the machine's
PostgreSQL binaries (``initdb``/``pg_ctl``, as the ``postgres`` user when we
are root). In the container, postgres is PID 1, so ``pg_ctl restart`` would
end the container: the test sends the postmaster the signal ``pg_ctl -m``
sends (SIGINT: fast, SIGQUIT: immediate) and starts the container again.
Without either, the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from eventflo import migrate
from tests import postgres
from tests.e2e.conftest import (
    NOTIFY_ONLY_ENV,
    Api,
    completes_by_notify,
    e2e_environment,
    free_port,
    start_api,
    start_worker,
    status_counts,
    tracked_children,
    wait_for,
    wait_idle_on_listen,
    wait_listening,
)

pytestmark = pytest.mark.e2e

Conn = psycopg.Connection[dict[str, Any]]

# Not tests/postgres.FAST_FLAGS: with synchronous_commit=off an immediate
# shutdown loses the last commits (WAL not yet written), which the test would
# rightly report as lost events. fsync=off only matters if the OS crashes.
SERVER_FLAGS = "-c fsync=off -c full_page_writes=off -c max_connections=200"
POOL_TIMEOUT = 2.0  # the API's wait for a connection: a 503 comes after about this long
OUTAGE_SECONDS = 8.0  # long enough for the pools' and workers' reconnect back-off to grow
_STOP_SIGNAL = {"fast": "SIGINT", "immediate": "SIGQUIT"}  # what `pg_ctl stop -m` sends


# -- a server this test may restart ------------------------------------------------


class _LocalCluster:
    """A throw-away cluster of this machine's PostgreSQL in a temporary directory."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="eventflo-restart-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.port = free_port()
        self.kind = f"private cluster ({bindir})"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.base, "postgres", "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _pg(self, program: str, *args: str) -> None:
        command = [*self._as_user, os.path.join(self.bindir, program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}\n{tail}")

    def create(self) -> None:
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()

    def restart(self, mode: str) -> None:
        self._pg("pg_ctl", "restart", "-m", mode, *self._start_args())

    def stop(self, mode: str) -> None:
        self._pg("pg_ctl", "stop", "-m", mode, "-w", "-t", "60", "-D", str(self.data))

    def start(self) -> None:
        self._pg("pg_ctl", "start", *self._start_args())

    def _start_args(self) -> list[str]:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.base} {SERVER_FLAGS}"
        )
        log = str(self.base / "server.log")
        return ["-w", "-t", "60", "-D", str(self.data), "-l", log, "-o", options]

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._pg("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.data))
        shutil.rmtree(self.base, ignore_errors=True)


class _Container:
    """A container of the tests' image with its data in the container (kept across restarts)."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.kind = f"testcontainers ({image})"
        self.url = ""
        self._context: Any = None
        self._id = ""

    def create(self) -> None:
        postgres._testcontainers_defaults()
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(self.image, driver=None).with_command(
            f"postgres {SERVER_FLAGS}"
        )
        # A fixed host port: docker picks a new one for a published port on every start.
        container.ports["5432"] = ("127.0.0.1", free_port())
        self._context = container
        container.start()
        self._id = container.get_wrapped_container().id
        self.url = container.get_connection_url()

    def _docker(self, *args: str) -> None:
        subprocess.run(["docker", *args], capture_output=True, timeout=120, check=True)

    def restart(self, mode: str) -> None:
        self.stop(mode)
        self.start()

    def stop(self, mode: str) -> None:
        self._docker("kill", "--signal", _STOP_SIGNAL[mode], self._id)
        self._docker("wait", self._id)

    def start(self) -> None:
        self._docker("start", self._id)
        wait_for(lambda: _answers(self.url), timeout=60, what="the restarted container to answer")

    def destroy(self) -> None:
        if self._context is not None:
            self._context.stop()


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _local_bindir() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(on_path))
    for bindir in candidates:
        usable = all(os.access(os.path.join(bindir, p), os.X_OK) for p in ("initdb", "pg_ctl"))
        if usable and (os.geteuid() != 0 or _has_postgres_user()):
            return bindir
    return None


def _version_key(path: str) -> int:
    match = re.search(r"/(\d+)/bin$", path)
    return int(match.group(1)) if match else 0


def _has_postgres_user() -> bool:
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return shutil.which("runuser") is not None


def _container_image() -> str | None:
    if not postgres._docker_answers():
        return None
    image = os.environ.get("EVENTFLO_TEST_POSTGRES_IMAGE")
    if image:
        return image
    return postgres.DEFAULT_IMAGE if postgres._image_available(postgres.DEFAULT_IMAGE) else None


@pytest.fixture(scope="module")
def restartable() -> Iterator[_LocalCluster | _Container]:
    """A PostgreSQL of this module's own, of the same kind as the session's where possible."""
    local = _local_bindir()
    image = None if os.environ.get("EVENTFLO_TEST_DATABASE_URL") and local else _container_image()
    if image:
        server: _LocalCluster | _Container = _Container(image)
    elif local:
        server = _LocalCluster(local)
    else:
        reason = (
            "no PostgreSQL this test may restart: no Docker engine with a usable image,"
            " and no initdb/pg_ctl (with a 'postgres' user when run as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        server.create()
        print(f"\nthe database restart test restarts PostgreSQL from: {server.kind}")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def restart_db(restartable: _LocalCluster | _Container) -> str:
    """A fresh, migrated database on the restartable server."""
    name = f"eventflo_restart_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(restartable.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres.with_database(restartable.url, name)
    migrate.apply(url)
    return url


# -- clients ---------------------------------------------------------------------


class _Feeder:
    """Threads POSTing events, each with a new Idempotency-Key, retried until answered 202/200.

    A 503 or a lost answer is retried with the same key, so every request ends
    with a known event id, and an event stored before its answer was lost is
    not stored twice.
    """

    def __init__(self, api: Api, prefix: str, threads: int = 2) -> None:
        self._url = f"{api.base_url}/events"
        self._api = api
        self._prefix = prefix
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.accepted: dict[str, str] = {}  # key -> event id
        self.created = 0  # 202s
        self.unavailable: list[float] = []  # latency of each 503
        self.unavailable_sent: list[float] = []  # when each request answered 503 was sent
        self.lost = 0  # connection errors and timeouts
        self.unexpected: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"feeder-{n}", daemon=True)
            for n in range(threads)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, n: int) -> None:
        session = self._api.new_session()
        i = 0
        while not self._stop.is_set():
            key = f"{self._prefix}-{n}-{i}"
            body = {
                "event_type": "sla_breach",
                "payload": {"minutes_over": i % 60},
                "source": "restart-feeder",
            }
            i += 1
            while True:
                started = time.monotonic()
                try:
                    response = session.post(
                        self._url, json=body, headers={"Idempotency-Key": key}, timeout=15
                    )
                except requests.RequestException:
                    with self._lock:
                        self.lost += 1
                    time.sleep(0.05)
                    continue
                took = time.monotonic() - started
                with self._lock:
                    if response.status_code in (200, 202):
                        event_id = response.json()["event_id"]
                        if self.accepted.setdefault(key, event_id) != event_id:
                            self.unexpected.append(f"{key}: two ids")
                        self.created += response.status_code == 202
                        break
                    if response.status_code == 503:
                        self.unavailable.append(took)
                        self.unavailable_sent.append(started)
                    else:
                        self.unexpected.append(f"{response.status_code} {response.text[:200]}")
                        break
                time.sleep(0.05)  # the client's own pause before a retry
        session.close()

    def count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a feeder did not stop"


def _query(url: str, sql: str, params: Any = None) -> list[dict[str, Any]] | None:
    """Rows of one query on a new connection; None while the database is away."""
    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=2) as c:
            return c.execute(sql, params).fetchall()
    except psycopg.OperationalError:
        return None


def _completed(url: str) -> int:
    rows = _query(url, "SELECT count(*) AS n FROM events WHERE status = 'completed'")
    return -1 if rows is None else int(rows[0]["n"])


def _retry_delays(log: str) -> list[float]:
    """The worker's reconnect waits, from its log lines (whose error text may span lines)."""
    found = re.findall(r"database unavailable \(.*?\); retrying in ([\d.]+) s", log, re.S)
    return [float(s) for s in found]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart_under_load_loses_nothing(
    mode, restartable, restart_db, request, tmp_path, runtime_dir
):
    env = {
        **e2e_environment(restart_db, runtime_dir),
        **NOTIFY_ONLY_ENV,
        "EVENTFLO_POOL_TIMEOUT": str(POOL_TIMEOUT),
    }
    with (
        tracked_children(request, tmp_path, env) as children,
        psycopg.connect(restart_db, autocommit=True, row_factory=dict_row) as conn,
    ):
        api = start_api(children)
        workers = [start_worker(children), start_worker(children)]
        wait_listening(conn, 2)
        conn.close()  # the server goes away below; later checks connect anew
        feeder = _Feeder(api, f"restart-{mode}")
        feeder.start()
        try:
            wait_for(
                lambda: _completed(restart_db) >= 100,
                timeout=30,
                what="100 events completed before the restart",
            )

            # 1. `pg_ctl restart -m MODE` while events arrive and are processed.
            restartable.restart(mode)
            after_restart = feeder.count()
            wait_for(
                lambda: feeder.count() >= after_restart + 100,
                timeout=30,
                what="the API to accept 100 more events after the restart",
            )

            # 2. Down for a while: the API answers 503 within its pool timeout.
            restartable.stop(mode)
            down_at = time.monotonic()
            refused_before = len(feeder.unavailable)
            started = time.monotonic()
            probe = api.session.post(
                f"{api.base_url}/events",
                json={"event_type": "user_signup"},
                headers={"Idempotency-Key": f"probe-{mode}"},
                timeout=15,
            )
            took = time.monotonic() - started
            assert probe.status_code == 503, probe.text
            assert probe.headers["Content-Type"] == "application/problem+json"
            assert took < POOL_TIMEOUT + 2, f"the 503 took {took:.1f} s"
            assert api.session.get(f"{api.base_url}/healthz", timeout=5).status_code == 200
            assert api.session.get(f"{api.base_url}/readyz", timeout=15).status_code == 503
            wait_for(
                lambda: (
                    len(feeder.unavailable) >= refused_before + 2
                    and time.monotonic() - down_at >= OUTAGE_SECONDS
                ),
                timeout=OUTAGE_SECONDS + 15,
                what=f"an outage of {OUTAGE_SECONDS} s in which the feeders are answered 503",
            )
            down_for = time.monotonic() - down_at
            restartable.start()

            # 3. Back: the API accepts again at once, the workers resume.
            back_at = time.monotonic()
            after_start = feeder.count()
            wait_for(
                lambda: feeder.count() >= after_start + 50,
                timeout=30,
                what="the API to accept events again after the outage",
            )
            api_back = time.monotonic() - back_at
            # The probe's 503 stored nothing: its retry is the first to store it.
            retried = api.post_event("user_signup", {}, key=f"probe-{mode}")
            assert retried.status_code == 202, retried.text
            # Keep the load on until the events claimed before the outage (their
            # leases lost with the connection) are rescued and completed.
            outage_over = _query(restart_db, "SELECT now() AS t")[0]["t"]
            wait_for(
                lambda: (
                    (
                        rows := _query(
                            restart_db,
                            "SELECT count(*) AS n FROM events WHERE created_at < %s"
                            " AND status <> 'completed'",
                            (outage_over,),
                        )
                    )
                    and rows[0]["n"] == 0
                ),
                timeout=45,
                what="every event accepted before the outage to complete",
            )
        finally:
            feeder.stop()

        with psycopg.connect(restart_db, autocommit=True, row_factory=dict_row) as conn:
            total = len(feeder.accepted) + 1  # + the probe
            wait_for(
                lambda: status_counts(conn) == {"completed": total},
                timeout=30,
                what=lambda: f"all {total} events completed (now {status_counts(conn)})",
            )
            assert feeder.unexpected == []
            _assert_each_completed_once(conn, feeder.accepted)

            # 4. The LISTEN connections are back: each worker wakes on a NOTIFY.
            idle = wait_idle_on_listen(conn, 2)
            _, first, latency_1 = completes_by_notify(conn)
            assert first in idle
            woke = next(w for w in workers if f":{w.pid}:" in first)
            woke.send(signal.SIGTERM)
            assert woke.wait_exit(15) == 0
            (second,) = wait_idle_on_listen(conn, 1)
            _, done_by, latency_2 = completes_by_notify(conn)
            assert done_by == second != first

        assert api.child.running()
        for worker in workers:
            assert "Traceback" not in worker.log()
            delays = _retry_delays(worker.log())
            assert len(delays) >= 2, f"no reconnect back-off logged: {delays}"
            if len(delays) >= 3:
                assert max(delays) >= 2 * min(delays), f"the back-off does not grow: {delays}"
        slowest = max(feeder.unavailable, default=0.0)
        # Once the database is back, the API connects again within a second or
        # so: a request sent later than that is not refused.
        late = [round(at - back_at, 1) for at in feeder.unavailable_sent if at > back_at]
        print(
            f"\n{mode}: accepted {len(feeder.accepted)} ({feeder.created} new), "
            f"503s {len(feeder.unavailable)} (slowest {slowest:.2f} s), "
            f"lost answers {feeder.lost}; "
            f"down {down_for:.1f} s, API accepting {api_back:.1f} s after the start "
            f"(503s for requests sent after the start: {late}); "
            f"NOTIFY wake-ups {latency_1 * 1000:.0f} and {latency_2 * 1000:.0f} ms; "
            f"reconnect waits {[_retry_delays(w.log()) for w in workers]}"
        )
        assert slowest < POOL_TIMEOUT + 2, f"a 503 took {slowest:.1f} s"
        assert all(t < POOL_TIMEOUT for t in late), f"503s for requests sent {late} s after"


def _assert_each_completed_once(conn: Conn, accepted: dict[str, str]) -> None:
    """One event per key, each completed with one result and an attempt history that agrees."""
    rows = conn.execute(
        "SELECT e.idempotency_key AS key, e.id::text, e.status::text, e.attempts,"
        " (SELECT count(*) FROM event_processing_results r WHERE r.event_id = e.id) AS results,"
        " array(SELECT a.outcome::text FROM event_attempts a WHERE a.event_id = e.id"
        "       ORDER BY a.id) AS outcomes,"
        " array(SELECT a.attempt FROM event_attempts a WHERE a.event_id = e.id"
        "       ORDER BY a.id) AS numbers"
        " FROM events e WHERE e.source = 'restart-feeder'"
    ).fetchall()
    stored = {row["key"]: row["id"] for row in rows}
    assert stored == accepted, "the stored events differ from the accepted ones"
    bad = [
        row
        for row in rows
        if row["status"] != "completed"
        or row["results"] != 1
        or row["numbers"] != list(range(1, row["attempts"] + 1))
        or row["outcomes"] != ["lease_expired"] * (row["attempts"] - 1) + ["completed"]
    ]
    assert bad == [], f"{len(bad)} events with a wrong result or history, e.g. {bad[:3]}"
