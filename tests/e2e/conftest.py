"""Real processes for the end-to-end tests: the API under gunicorn, worker processes, HTTP.

Every child runs in its own session with its output in a log file; teardown
kills whatever is still running (and its process group), and a failing test's
report carries the tail of every child's log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from eventflo import keys
from eventflo.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOG_TAIL = 6000

T = TypeVar("T")


# -- waiting on conditions ---------------------------------------------------


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the deadline.

    ``what`` may be a callable, to describe the state at the moment of failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            pytest.fail(
                f"timed out after {timeout:g} s waiting for {described} (last value: {value!r})"
            )
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_at(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot: with the pid, it names one process."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_if_same(pid: int, start: int | None, signum: int) -> None:
    """Signal ``pid`` only if it is still the process that started at ``start`` (pids recycle)."""
    if start is not None and alive(pid) and started_at(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process tree."""
    parents: dict[int, int] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if alive(p)}


# -- child processes -----------------------------------------------------------


@dataclasses.dataclass
class Child:
    """One process we started, with its combined stdout/stderr in ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: pathlib.Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def send(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        """The exit status; fails the test if the process is still running after ``timeout``."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} (pid {self.pid}) did not exit within {timeout:g} s")

    def kill_group(self) -> None:
        """SIGKILL the process and its process group (gunicorn workers, supervised workers).

        Only while it runs: until we reap it, its pid (the group id) cannot name anything else.
        """
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)


class Children:
    """Starts processes for one test and makes sure none outlives it."""

    def __init__(self, log_dir: pathlib.Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: list[Child] = []

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """Run ``python *args`` from the repository root in a new session."""
        log_path = self.log_dir / f"{len(self.started):02d}-{name}.log"
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, popen, log_path)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.started):
            child.kill_group()

    def report_sections(self) -> list[tuple[str, str]]:
        sections = []
        for child in self.started:
            text = child.log()
            if len(text) > LOG_TAIL:
                text = "…\n" + text[-LOG_TAIL:]
            sections.append((f"log of {child.name} (pid {child.pid}, {child.log_path})", text))
        return sections


_CHILDREN = pytest.StashKey[Children]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    children = item.stash.get(_CHILDREN, None)
    if report.failed and children is not None:
        report.sections.extend(children.report_sections())
    return report


@pytest.fixture(scope="session")
def runtime_dir() -> Iterator[str]:
    """A short private directory for gunicorn's control socket (else it would use ~/.gunicorn)."""
    path = tempfile.mkdtemp(prefix="eventflo-e2e-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def child_env(database_url: str, runtime_dir: str) -> dict[str, str]:
    """The environment of every child: this test's database, quick polls, unbuffered logs."""
    return e2e_environment(database_url, runtime_dir)


def e2e_environment(database_url: str, runtime_dir: str) -> dict[str, str]:
    """``child_env`` for any database (a test with a server of its own passes its URL)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTFLO_")}
    env.update(
        EVENTFLO_DATABASE_URL=database_url,
        EVENTFLO_POLL_INTERVAL="0.5",
        EVENTFLO_LEASE_SECONDS="5",
        EVENTFLO_RETRY_BASE_SECONDS="0.05",
        EVENTFLO_RETRY_MAX_SECONDS="0.2",
        EVENTFLO_LOG_LEVEL="info",
        XDG_RUNTIME_DIR=runtime_dir,
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def tracked_children(
    request: pytest.FixtureRequest, log_dir: pathlib.Path, env: dict[str, str]
) -> Iterator[Children]:
    """Children whose logs a failing test reports and which are all killed at the end."""
    started = Children(log_dir, env)
    request.node.stash[_CHILDREN] = started
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def children(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, child_env: dict[str, str]
) -> Iterator[Children]:
    with tracked_children(request, tmp_path, child_env) as started:
        yield started


# -- the API -------------------------------------------------------------------


@dataclasses.dataclass
class Api:
    """The HTTP API of one ``eventflo serve`` process tree.

    Auth is on, as by default: ``session`` (and every ``new_session()``)
    carries an admin key made for this API's database, unless the test
    started the API with ``EVENTFLO_AUTH=off``.
    """

    base_url: str
    child: Child
    session: requests.Session
    database_url: str
    api_key: str | None = None

    def new_session(self) -> requests.Session:
        """Another HTTP session (a client thread of its own) with the same key."""
        session = requests.Session()
        session.headers.update(self.session.headers)
        return session

    def post_event(
        self,
        event_type: str,
        payload: dict[str, Any],
        source: str | None = None,
        key: str | None = None,
    ) -> requests.Response:
        body: dict[str, Any] = {"event_type": event_type, "payload": payload}
        if source is not None:
            body["source"] = source
        headers = {"Idempotency-Key": key} if key else {}
        return self.session.post(f"{self.base_url}/events", json=body, headers=headers, timeout=10)

    def get_event(self, event_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": str(wait)} if wait else {}
        response = self.session.get(
            f"{self.base_url}/events/{event_id}", params=params, timeout=wait + 10
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_finished(self, event_id: str, wait: float = 10) -> dict[str, Any]:
        """GET ?wait=: the event once completed or failed; fails the test if it is not."""
        event = self.get_event(event_id, wait=wait)
        assert event["status"] in ("completed", "failed"), (
            f"event {event_id} still {event['status']} after GET ?wait={wait:g}: {event}"
        )
        return event


def _api_ready(api: Api) -> bool:
    if not api.child.running():
        pytest.fail(f"the API exited with status {api.child.popen.returncode} before it answered")
    try:
        response = api.session.get(f"{api.base_url}/events", params={"limit": "1"}, timeout=2)
    except requests.ConnectionError:
        return False
    return response.status_code == 200


def start_api(children: Children, *, wsgi: bool = False, **env: str) -> Api:
    """The API on a free port, once a GET reads the database.

    ``eventflo serve`` by default; with ``wsgi``, plain gunicorn on ``wsgi:app`` (as in the README).
    """
    port = free_port()
    settings = {**children.env, **env}
    api_key = None
    if Config.from_env(settings).auth:
        api_key = make_api_key(settings["EVENTFLO_DATABASE_URL"], scope="admin", name="e2e tests")
    if wsgi:
        args = ["-m", "gunicorn", "--worker-class", "gthread", "--threads", "8", "-w", "2"]
        args += ["-b", f"127.0.0.1:{port}", "wsgi:app"]
    else:
        args = ["-m", "eventflo", "serve", "--port", str(port), "--workers", "2", "--threads", "8"]
    child = children.start("api", *args, env=env)
    session = requests.Session()
    if api_key is not None:
        session.headers["Authorization"] = f"Bearer {api_key}"
    api = Api(
        f"http://127.0.0.1:{port}", child, session, settings["EVENTFLO_DATABASE_URL"], api_key
    )
    try:
        wait_for(
            lambda: _api_ready(api),
            timeout=30,
            what=f"the API on port {port} to answer",
            interval=0.1,
        )
    except BaseException:
        api.session.close()
        raise
    return api


@pytest.fixture
def api(children: Children) -> Iterator[Api]:
    """The API under ``eventflo serve``."""
    started = start_api(children)
    try:
        yield started
    finally:
        started.session.close()


@pytest.fixture
def wsgi_api(children: Children) -> Iterator[Api]:
    """The API under ``gunicorn … wsgi:app``, the README's way to serve it."""
    started = start_api(children, wsgi=True)
    try:
        yield started
    finally:
        started.session.close()


def eventflo(env: dict[str, str], *args: str) -> str:
    """Run the ``eventflo`` command as a user would, in ``env``; its stdout (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, "-m", "eventflo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def make_api_key(database_url: str, *, scope: str, name: str) -> str:
    """A new key in that database, as `eventflo keys create` makes it (same function)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        _, key = keys.create(conn, name=name, scope=scope)
    return key


# -- workers and the database ----------------------------------------------------


def start_worker(children: Children, *, processes: int | None = None, **env: str) -> Child:
    """``python worker.py`` (one worker), or ``python -m eventflo worker --processes N``."""
    if processes is None:
        return children.start("worker", "worker.py", env=env)
    args = ["-m", "eventflo", "worker", "--processes", str(processes)]
    return children.start(f"worker-supervisor-{processes}", *args, env=env)


def listening_workers(conn: psycopg.Connection[dict[str, Any]]) -> int:
    """Workers of this database whose LISTEN connection is up (each opens it first thing)."""
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'eventflo-listen %'"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def wait_listening(
    conn: psycopg.Connection[dict[str, Any]], count: int, timeout: float = 30
) -> None:
    wait_for(
        lambda: listening_workers(conn) >= count, timeout=timeout, what=f"{count} workers to LISTEN"
    )


def status_counts(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, int]:
    rows = conn.execute("SELECT status::text, count(*) AS n FROM events GROUP BY status").fetchall()
    return {row["status"]: int(row["n"]) for row in rows}


def wait_all_completed(
    conn: psycopg.Connection[dict[str, Any]], total: int, timeout: float
) -> None:
    """Until all ``total`` events are completed; fails early if any fails."""

    def done() -> bool:
        counts = status_counts(conn)
        assert counts.get("failed", 0) == 0, f"events failed: {counts}"
        return counts.get("completed", 0) == total

    wait_for(
        done,
        timeout=timeout,
        interval=0.1,
        what=lambda: f"all {total} events completed (by status now: {status_counts(conn)})",
    )


def insert_bulk(
    conn: psycopg.Connection[dict[str, Any]], count: int, source: str = "e2e-bulk"
) -> None:
    """``count`` events in one statement (one NOTIFY).

    Types cycle payment_failed, sla_breach, system_error, user_signup, with varied amounts.
    """
    conn.execute(
        """
        INSERT INTO events (event_type, source, payload)
        SELECT (ARRAY['payment_failed', 'sla_breach', 'system_error', 'user_signup'])[1 + i %% 4],
               %(source)s,
               CASE i %% 4
                   WHEN 0 THEN jsonb_build_object('amount', i %% 2000)
                   WHEN 1 THEN jsonb_build_object('minutes_over', i %% 60)
                   ELSE '{}'::jsonb
               END
        FROM generate_series(1, %(count)s) AS i
        """,
        {"source": source, "count": count},
    )


def expected_rules_of_bulk(count: int) -> dict[str, int]:
    """What the default rule table says about ``insert_bulk(count)``, worked out independently."""
    expected: dict[str, int] = {}
    for i in range(1, count + 1):
        kind = i % 4
        if kind == 0:
            rule = "payment_failed.large" if i % 2000 >= 1000 else "payment_failed.small"
        elif kind == 1:
            rule = "sla_breach.major" if i % 60 >= 30 else "sla_breach.minor"
        elif kind == 2:
            rule = "system_error"
        else:
            rule = "default"
        expected[rule] = expected.get(rule, 0) + 1
    return expected


# -- proving that a NOTIFY (not the poll) wakes a worker -------------------------

# Settings under which only a NOTIFY can make an idle worker claim within seconds:
# the poll comes after 24-36 s, and no heartbeat wakes the loop during a test.
NOTIFY_ONLY_ENV = {
    "EVENTFLO_POLL_INTERVAL": "30",
    "EVENTFLO_HEARTBEAT_SECONDS": "300",
    "EVENTFLO_WORKER_TIMEOUT": "900",
}

# Only the claim sets events to 'processing'; pg_stat_activity shows its text.
_CLAIM_MARK = "SET status = 'processing'"


def wait_worker_sessions_gone(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Until no worker session is left: the server noticed that the killed worker is gone."""
    wait_for(
        lambda: (
            conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE application_name LIKE 'eventflo-worker%'"
                " AND datname = current_database()"
            ).fetchone()["n"]
            == 0
        ),
        timeout=15,
        what="the killed worker's database sessions to end",
    )


def worker_sessions(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per worker id, its sessions in pg_stat_activity: ``{"worker": row, "listen": row}``."""
    rows = conn.execute(
        "SELECT pid, application_name, backend_start, state, query, query_start, state_change"
        " FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name ~ '^eventflo-(worker|listen) '"
    ).fetchall()
    sessions: dict[str, dict[str, Any]] = {}
    for row in rows:
        role, worker_id = str(row["application_name"]).split(" ", 1)
        sessions.setdefault(worker_id, {})[role.removeprefix("eventflo-")] = row
    return sessions


def _sitting_idle(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
    """Workers whose last claim, made after their LISTEN, found nothing; nothing else is to do.

    A claim that found events is followed by their outcomes, written by the
    same worker after the claim started. pg_stat_activity is read first and
    the events second, so a claim that finds events as we look is seen.
    """
    claims: dict[str, Any] = {}
    for worker_id, session in worker_sessions(conn).items():
        main, listen = session.get("worker"), session.get("listen")
        if main is None or listen is None:
            continue
        if listen["state"] != "idle" or "LISTEN" not in str(listen["query"]):
            continue  # connected, but not listening yet
        if main["state"] != "idle" or _CLAIM_MARK not in str(main["query"]):
            continue
        if main["query_start"] > listen["state_change"]:
            claims[worker_id] = main["query_start"]
    busy = conn.execute(
        "SELECT count(*) AS n FROM events WHERE status NOT IN ('completed', 'failed')"
    ).fetchone()
    assert busy is not None
    if busy["n"]:
        return {}
    written = conn.execute(
        "SELECT worker_id, max(finished_at) AS last FROM event_attempts"
        " WHERE worker_id = ANY(%s) AND outcome <> 'lease_expired' GROUP BY worker_id",
        (list(claims),),
    ).fetchall()
    last = {row["worker_id"]: row["last"] for row in written}
    return {w: start for w, start in claims.items() if w not in last or start > last[w]}


def wait_idle_on_listen(
    conn: psycopg.Connection[dict[str, Any]], count: int, timeout: float = 30
) -> set[str]:
    """Until ``count`` workers wait on LISTEN with nothing to do; their ids.

    Each one's last statement is a claim that found nothing, made after its
    LISTEN, and no event is left to do. From then on (under
    NOTIFY_ONLY_ENV) only a NOTIFY makes it claim within seconds. The state
    must hold for 0.5 s: a NOTIFY that arrived during the last batch wakes a
    worker once more right after it goes idle.
    """
    seen: dict[str, Any] = {}
    since = time.monotonic()

    def settled() -> set[str]:
        nonlocal seen, since
        now = _sitting_idle(conn)
        if len(now) < count or now != seen:
            seen, since = now, time.monotonic()
            return set()
        return set(now) if time.monotonic() - since >= 0.5 else set()

    return wait_for(
        settled,
        timeout=timeout,
        what=lambda: f"{count} workers idle on LISTEN (sessions: {worker_sessions(conn)})",
    )


def completes_by_notify(
    conn: psycopg.Connection[dict[str, Any]], within: float = 3.0, source: str = "notify-probe"
) -> tuple[str, str, float]:
    """Insert one event into idle workers (see ``wait_idle_on_listen``); it must complete in time.

    Returns (event id, the worker that completed it, seconds it took).
    """
    row = conn.execute(
        "INSERT INTO events (event_type, source, payload) VALUES ('system_error', %s, '{}')"
        " RETURNING id",
        (source,),
    ).fetchone()
    assert row is not None
    started = time.monotonic()

    def finished() -> dict[str, Any] | None:
        return conn.execute(
            "SELECT e.status::text, a.worker_id FROM events e"
            " JOIN event_attempts a ON a.event_id = e.id AND a.outcome = 'completed'"
            " WHERE e.id = %s",
            (row["id"],),
        ).fetchone()

    done = wait_for(
        finished,
        timeout=within,
        interval=0.02,
        what=f"event {row['id']} to complete by NOTIFY within {within:g} s (the poll is 30 s away)",
    )
    return str(row["id"]), str(done["worker_id"]), time.monotonic() - started
