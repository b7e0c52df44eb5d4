"""A snapshot of the queue for operators: counts by status and severity, and the backlog's age."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from eventflo import events, registry, rules
from eventflo.sql import QUERIES
from eventflo.status import Status

Connection = psycopg.Connection[dict[str, Any]]


def collect(conn: Connection) -> dict[str, Any]:
    """Read the snapshot in one transaction, so its numbers agree with each other."""
    with conn.transaction():
        events.read_one_snapshot(conn)
        by_status = {
            row["status"]: row["count"] for row in conn.execute(QUERIES["count_by_status"])
        }
        by_severity = {
            row["severity"]: row["count"] for row in conn.execute(QUERIES["count_by_severity"])
        }
        oldest = conn.execute(QUERIES["oldest_queued_age"]).fetchone()
    return {
        "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
        "by_severity": {s.value: by_severity.get(s.value, 0) for s in rules.Severity},
        "oldest_queued_age_seconds": oldest["seconds"] if oldest else None,
    }


def render(snapshot: dict[str, Any]) -> str:
    """The snapshot as a small aligned table."""
    lines = ["status        count"]
    lines += [f"{name:<12} {count:>6}" for name, count in snapshot["by_status"].items()]
    lines += ["", "severity      count"]
    lines += [f"{name:<12} {count:>6}" for name, count in snapshot["by_severity"].items()]
    age = snapshot["oldest_queued_age_seconds"]
    lines += ["", f"oldest queued: {'none' if age is None else f'{age:.1f} s'}"]
    return "\n".join(lines)


def render_watch(
    snapshot: dict[str, Any],
    workers: Sequence[registry.WorkerInfo],
    *,
    worker_timeout: float,
    interval: float,
    completed_per_s: float | None,
    now: dt.datetime,
) -> str:
    """A frame of ``eventflo stats --watch``: the snapshot, the throughput, the running workers."""
    rate = "-" if completed_per_s is None else f"{completed_per_s:,.0f}"
    return "\n".join(
        [
            f"eventflo stats  {now:%Y-%m-%d %H:%M:%S}  every {interval:g} s  (Ctrl-C quits)",
            "",
            render(snapshot),
            f"completed/s:   {rate} (since the previous refresh)",
            "",
            registry.render(workers, timeout=worker_timeout),
        ]
    )


def watch(
    connect: Callable[[], Connection],
    *,
    worker_timeout: float,
    interval: float,
    show: Callable[[str], None],
) -> None:
    """Show a frame (``render_watch``) every ``interval`` s until Ctrl-C, then return.

    The first connection must succeed (its error propagates, so the command
    fails as usual); an outage after that shows in the frame, and the next
    frame reconnects by itself.
    """
    conn: Connection | None = connect()
    previous: tuple[int, float] | None = None  # (completed, monotonic time) of the last frame
    try:
        while True:
            try:
                if conn is None:
                    conn = connect()
                snapshot = collect(conn)
                running = registry.list_workers(conn, timeout=worker_timeout)
            except psycopg.OperationalError as exc:
                if conn is not None:
                    conn.close()
                conn, previous = None, None
                body = f"database unavailable: {first_line(exc)}; retrying every {interval:g} s"
            else:
                completed, at = snapshot["by_status"][Status.completed], time.monotonic()
                rate = (
                    None
                    if previous is None
                    else max(0, completed - previous[0]) / (at - previous[1])
                )
                previous = (completed, at)
                body = render_watch(
                    snapshot,
                    running,
                    worker_timeout=worker_timeout,
                    interval=interval,
                    completed_per_s=rate,
                    now=dt.datetime.now().astimezone(),
                )
            show(body)
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        if conn is not None:
            conn.close()


def first_line(exc: BaseException) -> str:
    """An error's first line: enough for a one-line message (psycopg adds context lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
