"""The ``latency`` mode: one event at a time through idle workers, by SQL and through the API.

W real worker processes (``eventflo worker --processes W``) wait on LISTEN,
and the real API runs under gunicorn (``eventflo serve --workers 2``), each
in a child process of their own. Then, strictly one event at a time:

- database path: the bench inserts an event and commits (autocommit), then
  blocks on ``LISTEN eventflo_finished`` (workers send one NOTIFY per
  finished batch) and re-reads the status until it is completed; the time
  is client-measured, insert commit to completed seen;
- HTTP path: ``POST /events`` then ``GET /events/{id}?wait=5``, from before
  the POST to the GET answering completed, over one keep-alive connection.

The wake-up part is the database's own view of the database path: the
claim's ``started_at`` minus the insert's ``created_at``. Every event must
be completed once, with one result row and one attempt (``drain.verify``).

The helpers that start and stop the API and the workers and talk HTTP are
shared with the ``ingest`` mode.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from psycopg.types.json import Jsonb

from eventflo.bench import (
    POLL_SECONDS,
    QUERIES,
    Bench,
    BenchError,
    ModeResult,
    Sample,
    drain,
    figures,
)

SUMMARY = "one event at a time through idle workers: insert → completed, by SQL and by HTTP"

FIGURES = (
    ("db_p50_ms", "SQL insert commit → completed, p50", "ms"),
    ("db_p95_ms", "SQL insert commit → completed, p95", "ms"),
    ("db_p99_ms", "SQL insert commit → completed, p99", "ms"),
    ("http_p50_ms", "HTTP POST → GET ?wait= completed, p50", "ms"),
    ("http_p95_ms", "HTTP POST → GET ?wait= completed, p95", "ms"),
    ("http_p99_ms", "HTTP POST → GET ?wait= completed, p99", "ms"),
    ("wakeup_p50_ms", "wake-up, insert → claim (DB clock), p50", "ms"),
    ("wakeup_p99_ms", "wake-up, insert → claim (DB clock), p99", "ms"),
)

# Events sent through each path before the timed ones: connections, caches, plans.
WARMUP_EVENTS = 10
# How long one event may take before the run is called failed.
EVENT_TIMEOUT = 10.0
# GET /events/{id}?wait=: long enough that a completed event is never missed.
WAIT_SECONDS = 5
# How long the API and the workers get to come up, and to stop on SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
API_PROCESSES = 2


def run(bench: Bench) -> ModeResult:
    with tempfile.TemporaryFile() as log, workers(bench, log), api_server(bench, log) as port:
        samples = bench.repeat("latency", lambda: latency_once(bench, port))
    return ModeResult("latency", figures(samples, FIGURES))


def latency_once(bench: Bench, port: int) -> Sample:
    """One run: the warm-up, then ``settings.latency_events`` events through each path."""
    count = bench.settings.latency_events
    with bench.connect("setup") as conn:
        conn.execute(QUERIES["truncate_events"])
        generated = conn.execute(
            QUERIES["generated_events"], {"events": 2 * (count + WARMUP_EVENTS)}
        ).fetchall()
    by_sql, by_http = generated[: count + WARMUP_EVENTS], generated[count + WARMUP_EVENTS :]
    db_times, db_ids = _sql_path(bench, by_sql)
    http_times = _http_path(port, bench.api_key, by_http)
    with bench.connect("verify") as conn:
        drain.verify(conn, len(generated))
        wakeups = [
            row["seconds"]
            for row in conn.execute(QUERIES["wakeup_seconds"], {"ids": db_ids[WARMUP_EVENTS:]})
        ]
    db = percentiles(db_times[WARMUP_EVENTS:])
    http = percentiles(http_times[WARMUP_EVENTS:])
    wakeup = percentiles(wakeups)
    return {
        "db_p50_ms": db[50],
        "db_p95_ms": db[95],
        "db_p99_ms": db[99],
        "http_p50_ms": http[50],
        "http_p95_ms": http[95],
        "http_p99_ms": http[99],
        "wakeup_p50_ms": wakeup[50],
        "wakeup_p99_ms": wakeup[99],
    }


def _sql_path(bench: Bench, generated: Sequence[dict[str, Any]]) -> tuple[list[float], list[Any]]:
    """Insert each event, wait for the NOTIFY of its batch, re-read; seconds and ids per event."""
    times: list[float] = []
    ids: list[Any] = []
    with bench.connect("latency insert") as conn, bench.connect("latency listen") as listener:
        listener.execute(QUERIES["listen_finished"])
        for event in generated:
            for _ in listener.notifies(timeout=0):  # hints of earlier events: not ours
                pass
            row = conn.execute(
                QUERIES["insert_one_event"],
                {"event_type": event["event_type"], "payload": Jsonb(event["payload"])},
            ).fetchone()
            committed = time.perf_counter()
            assert row is not None
            deadline = committed + EVENT_TIMEOUT
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise BenchError(
                        f"event {row['id']} was not completed within {EVENT_TIMEOUT:g} s"
                    )
                for _ in listener.notifies(timeout=remaining, stop_after=1):
                    pass
                status = conn.execute(QUERIES["event_status"], {"id": row["id"]}).fetchone()
                if status is not None and status["status"] == "completed":
                    break
                if status is None or status["status"] == "failed":
                    raise BenchError(f"event {row['id']} ended as {status and status['status']}")
            times.append(time.perf_counter() - committed)
            ids.append(row["id"])
    return times, ids


def _http_path(port: int, api_key: str, generated: Sequence[dict[str, Any]]) -> list[float]:
    """POST each event, then GET it with ?wait= until completed; seconds per event."""
    times: list[float] = []
    with contextlib.closing(HttpClient(port, key=api_key)) as client:
        for event in generated:
            body = json.dumps(
                {"event_type": event["event_type"], "source": "bench", "payload": event["payload"]}
            ).encode()
            started = time.perf_counter()
            status, accepted = client.request("POST", "/events", body)
            if status != 202:
                raise BenchError(f"POST /events answered {status}: {accepted}")
            status, answer = client.request(
                "GET", f"/events/{accepted['event_id']}?wait={WAIT_SECONDS}"
            )
            finished = time.perf_counter()
            if status != 200 or answer.get("status") != "completed" or not answer.get("result"):
                shown = answer.get("status") if isinstance(answer, dict) else answer
                raise BenchError(
                    f"GET /events/{accepted['event_id']}?wait={WAIT_SECONDS} answered {status}"
                    f" with status {shown!r}, not completed with a result"
                )
            times.append(finished - started)
    return times


def percentiles(seconds: Sequence[float]) -> dict[int, float]:
    """p50, p95 and p99 of ``seconds``, in milliseconds."""
    if len(seconds) < 2:
        value = seconds[0] * 1000 if seconds else 0.0
        return {50: value, 95: value, 99: value}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {p: cuts[p - 1] * 1000 for p in (50, 95, 99)}


class HttpClient:
    """One keep-alive HTTP/1.1 connection to the API (stdlib only: ``requests`` is a test extra)."""

    def __init__(self, port: int, timeout: float = 30.0, *, key: str | None = None) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}

    def connect(self) -> None:
        try:
            self._conn.connect()
        except OSError as exc:
            raise BenchError(f"cannot connect to the API: {exc!r}") from None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update(self._auth)
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise BenchError(f"{method} {path.split('?')[0]} failed: {exc!r}") from None
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data[:200].decode(errors="replace")

    def close(self) -> None:
        self._conn.close()


def _env(bench: Bench) -> dict[str, str]:
    return dict(
        os.environ,
        EVENTFLO_DATABASE_URL=bench.url,
        EVENTFLO_BATCH_SIZE=str(bench.settings.batch_size),
        EVENTFLO_LOG_LEVEL="warning",
    )


@contextlib.contextmanager
def workers(bench: Bench, log: IO[bytes]) -> Iterator[None]:
    """``eventflo worker --processes W``, up and listening; stopped on the way out."""
    count = bench.settings.workers
    command = [sys.executable, "-m", "eventflo", "worker", "--processes", str(count)]
    with _child(command, _env(bench), log) as process:
        deadline = time.monotonic() + START_TIMEOUT
        with bench.connect("observer") as conn:
            while True:
                row = conn.execute(QUERIES["listening_workers"]).fetchone()
                if row is not None and row["listening"] >= count:
                    break
                _check_alive(process, "the workers", log)
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"only {row and row['listening']} of {count} workers were listening"
                        f" after {START_TIMEOUT:g} s"
                    )
                time.sleep(POLL_SECONDS)
        yield


@contextlib.contextmanager
def api_server(
    bench: Bench,
    log: IO[bytes],
    *,
    module: str = "eventflo",
    what: str = "the API",
    probe: str = "/events?limit=1",
    ready: Callable[[int], bool] = lambda status: status == 200,
) -> Iterator[int]:
    """``python -m <module> serve --workers 2`` on a free port, once ``probe`` answers ``ready``.

    The ingest mode starts its bare endpoint here too (``eventflo.bench.bare_api``
    takes ``serve``'s options), so both servers start and are awaited alike.
    """
    port = _free_port()
    command = [
        sys.executable, "-m", module, "serve",
        "--port", str(port), "--workers", str(API_PROCESSES),
    ]  # fmt: skip
    with _child(command, _env(bench), log) as process:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with contextlib.closing(HttpClient(port, timeout=2.0, key=bench.api_key)) as client:
                    status, _ = client.request("GET", probe)
                if ready(status):
                    break
            except BenchError:
                pass
            _check_alive(process, what, log)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{what} did not answer within {START_TIMEOUT:g} s{drain.log_tail(log)}"
                )
            time.sleep(POLL_SECONDS)
        yield port


@contextlib.contextmanager
def _child(
    command: list[str], env: dict[str, str], log: IO[bytes]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in a session of its own, stopped on the way out (also on errors)."""
    # A session of its own: Ctrl-C reaches the bench, which stops it with SIGTERM.
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM; after STOP_TIMEOUT, SIGKILL to its whole process group (its own session)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def _check_alive(process: subprocess.Popen[bytes], what: str, log: IO[bytes]) -> None:
    if process.poll() is not None:
        raise BenchError(
            f"{what} exited at start-up (status {process.returncode}){drain.log_tail(log)}"
        )


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
