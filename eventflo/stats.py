"""A snapshot of the queue for operators: counts by status and severity, and the backlog's age."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg

from eventflo import events, registry, rules
from eventflo.sql import QUERIES


def collect(conn: psycopg.Connection[dict[str, Any]]) -> dict[str, Any]:
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
        "by_status": {status: by_status.get(status, 0) for status in events.STATUSES},
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
    """One frame of ``eventflo stats --watch``: the snapshot, the throughput, the running workers."""
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
