"""The worker registry: one row per worker process in ``workers``, for operators and the rescue.

A worker registers with its first heartbeat and heartbeats from its main loop
every ``EVENTFLO_HEARTBEAT_SECONDS``. It is *live* while its heartbeats
arrive, *silent* once the last one is older than ``EVENTFLO_WORKER_TIMEOUT``
(it died, hangs, or lost the database), and *stopped* after a graceful stop.
The lease rescue (``queue.rescue_expired``) releases the leases of stopped
and silent workers at once, without waiting for the leases to expire.

A worker known to be dead is *reaped*: its supervisor saw the process exit
(``reap``), or it has been silent for PRESUMED_DEAD_SECONDS and the rescue
released every lease it held (``reap_silent``). A reaped worker needs
nothing from an operator, so it is listed with the stopped ones, not as
silent. Only a heartbeat brings it back.

Every function takes the connection first; ages come from the server's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
from collections.abc import Sequence
from typing import Any

import psycopg

from eventflo import sql

QUERIES = sql.load("registry.sql")

# How long a finished worker stays in the registry: stopped ones are listed
# (``eventflo workers --all``) for an hour, silent ones for a day; then the
# next worker to start deletes their rows.
STOPPED_RETENTION_SECONDS = 3600.0
SILENT_RETENTION_SECONDS = 86_400.0
# A silent worker that holds no lease any more is presumed dead (reaped) after
# this long without a heartbeat. Until then it shows as silent: it may hang
# rather than be dead, and the dashboard, `eventflo workers` and the
# EventFloSilentWorkers alert (for: 5m) are there to say so. A worker whose
# death its supervisor saw is reaped at once instead.
PRESUMED_DEAD_SECONDS = 600.0

STATES = ("live", "silent", "stopped", "reaped")

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """One registry row as an operator sees it; ``state`` is judged with the caller's timeout."""

    id: str
    host: str
    pid: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    # Why a dead worker was reaped ("killed by SIGKILL", "silent for 35 s"); None otherwise.
    reaped_reason: str | None
    completed: int
    failed: int
    seen_seconds_ago: float
    state: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        entry = dataclasses.asdict(self)
        for key in ("started_at", "last_seen_at", "stopped_at"):
            if entry[key] is not None:
                entry[key] = entry[key].isoformat()
        return entry


def register(
    conn: psycopg.Connection[Row],
    *,
    worker_id: str,
    completed: int = 0,
    failed: int = 0,
    host: str | None = None,
    pid: int | None = None,
) -> None:
    """Add a starting worker to the registry (its first heartbeat), and forget long-finished ones.

    Rows accumulate only as workers start, so a start is when old ones go.
    """
    heartbeat(conn, worker_id=worker_id, completed=completed, failed=failed, host=host, pid=pid)
    prune(conn)


def heartbeat(
    conn: psycopg.Connection[Row],
    *,
    worker_id: str,
    completed: int,
    failed: int,
    host: str | None = None,
    pid: int | None = None,
) -> None:
    """Record that the worker is alive, with its totals so far; re-registers it if its row is gone.

    ``host`` and ``pid`` default to this process's.
    """
    conn.execute(
        QUERIES["heartbeat_worker"],
        {
            "worker_id": worker_id,
            "host": host or socket.gethostname(),
            "pid": pid or os.getpid(),
            "completed": completed,
            "failed": failed,
        },
    )


def stop(conn: psycopg.Connection[Row], *, worker_id: str, completed: int, failed: int) -> None:
    """Record a graceful stop with the final totals."""
    conn.execute(
        QUERIES["stop_worker"], {"worker_id": worker_id, "completed": completed, "failed": failed}
    )


def reap(conn: psycopg.Connection[Row], *, worker_id: str, reason: str) -> bool:
    """Record that a worker died (seen by its supervisor); False if it had recorded its own stop.

    The rescue then releases at once every lease it still holds.
    """
    return (
        conn.execute(QUERIES["reap_worker"], {"worker_id": worker_id, "reason": reason}).rowcount
        == 1
    )


def reap_silent(conn: psycopg.Connection[Row], *, timeout: float) -> list[Row]:
    """Reap the workers that hold no lease and have long been silent; their id and reason.

    "Long" is PRESUMED_DEAD_SECONDS, or ``timeout`` if that is longer. Called
    after the rescue released their leases.
    """
    presumed_dead_after = max(PRESUMED_DEAD_SECONDS, timeout)
    return conn.execute(
        QUERIES["reap_silent_workers"], {"presumed_dead_after": presumed_dead_after}
    ).fetchall()


def prune(conn: psycopg.Connection[Row]) -> int:
    """Delete the rows of workers stopped or silent for longer than the registry keeps them."""
    cursor = conn.execute(QUERIES["prune_workers"], _retention())
    return cursor.rowcount


def list_workers(
    conn: psycopg.Connection[Row], *, timeout: float, include_stopped: bool = False
) -> list[WorkerInfo]:
    """Running workers (live, or silent after ``timeout`` s without a heartbeat), oldest first.

    With ``include_stopped``, also the workers stopped or reaped within STOPPED_RETENTION_SECONDS.
    """
    rows = conn.execute(
        QUERIES["list_workers"],
        {"timeout": timeout, "include_stopped": include_stopped, **_retention()},
    ).fetchall()
    return [WorkerInfo(**row) for row in rows]


def _retention() -> dict[str, float]:
    return {
        "stopped_retention": STOPPED_RETENTION_SECONDS,
        "silent_retention": SILENT_RETENTION_SECONDS,
    }


def render(workers: Sequence[WorkerInfo], *, timeout: float) -> str:
    """The workers as an aligned table under a one-line summary (times in UTC)."""
    counts = {state: sum(1 for w in workers if w.state == state) for state in STATES}
    summary = (
        f"{counts['live']} live, {counts['silent']} silent (no heartbeat for over {timeout:g} s)"
    )
    ended = [f"{counts[state]} {state}" for state in ("stopped", "reaped") if counts[state]]
    if ended:
        summary += f", {' and '.join(ended)} less than {_age(STOPPED_RETENTION_SECONDS)} ago"
    if not workers:
        return f"{summary}: no worker is running"
    header = ("id", "host", "pid", "started (UTC)", "last seen", "completed", "failed", "state")
    rows = [
        (
            w.id,
            w.host,
            str(w.pid),
            w.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            f"{_age(w.seen_seconds_ago)} ago",
            f"{w.completed:,}",
            f"{w.failed:,}",
            f"{w.state} ({w.reaped_reason})" if w.reaped_reason else w.state,
        )
        for w in workers
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {2, 5, 6}  # numbers align right

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([summary, "", line(header), *(line(row) for row in rows)])


def _age(seconds: float) -> str:
    """A short duration for people: 0.8 s, 42 s, 12 min, 3.5 h."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
