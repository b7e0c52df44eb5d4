"""What the dashboard shows, read from the database in one snapshot: no web here.

The page's filters come from a query string but are checked here, so a
wrong value is ignored with a notice instead of failing the page.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from eventflo import chart, db, endpoints, events, registry
from eventflo.sql import load
from eventflo.status import Status

QUERIES = load("dashboard.sql")

THROUGHPUT_MINUTES = 15
RECENT_LIMIT = 25
FAILED_LIMIT = 20
FAILED_DELIVERIES_LIMIT = 20
# The type filter offers the types among this many newest events (a bounded read).
TYPE_SCAN = 1000
EVENT_TYPE_MAX_LENGTH = 100
RULE_MATCH_HOURS = 24


@dataclasses.dataclass(frozen=True)
class RuleMatches:
    """How many events one rule judged in the last RULE_MATCH_HOURS, and its share of all."""

    rule_id: str
    events: int
    share: float


@dataclasses.dataclass(frozen=True)
class ActiveVersion:
    """The rule version the workers judge with: what an operator checks after an apply."""

    version: int
    message: str
    activated_at: dt.datetime
    activated_by: str


@dataclasses.dataclass(frozen=True)
class Filters:
    """The recent list's filters, from the query string; ``notice`` says why one was ignored."""

    status: Status | None = None
    event_type: str | None = None
    notice: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        status_text = args.get("status", "").strip() or None
        event_type = args.get("event_type", "").strip() or None
        status, notice = None, None
        if status_text is not None:
            if status_text in events.STATUSES:
                status = Status(status_text)
            else:
                notice = f"Unknown status {status_text[:40]!r} ignored; choose one of the list."
        if event_type is not None and len(event_type) > EVENT_TYPE_MAX_LENGTH:
            notice = f"Event types have at most {EVENT_TYPE_MAX_LENGTH} characters; filter ignored."
            event_type = None
        return cls(status=status, event_type=event_type, notice=notice)

    def query(self) -> dict[str, str]:
        """The query string that reproduces these filters."""
        return {
            key: value
            for key, value in (("status", self.status), ("event_type", self.event_type))
            if value
        }


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Everything the page shows, read in one snapshot so the numbers agree."""

    now: dt.datetime
    counts: dict[Status, int]
    oldest_due_since: dt.datetime | None
    throughput: chart.Chart
    live_workers: list[registry.WorkerInfo]
    silent_workers: int
    recent: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    event_types: list[str]
    rule_matches: list[RuleMatches]
    # None only in a database whose migrations stop before rule versions.
    rules_version: ActiveVersion | None
    # Where verdicts are delivered, with their health (none in a database before endpoints).
    endpoints: list[endpoints.Endpoint] = dataclasses.field(default_factory=list)
    # The newest failed deliveries (newest made first), each endpoint's from its partial index.
    failed_deliveries: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def oldest_due_age(self) -> dt.timedelta | None:
        return None if self.oldest_due_since is None else self.now - self.oldest_due_since


def read(conn: db.Connection, filters: Filters, *, worker_timeout: float) -> Snapshot:
    """Read the page in one read-only snapshot (no schema yet: SchemaNotCurrent, from db)."""
    with conn.transaction():
        events.read_one_snapshot(conn)
        clock = conn.execute(QUERIES["now"]).fetchone()
        assert clock is not None, "SELECT now() has a row"
        now: dt.datetime = clock["now"]
        counts: collections.Counter[str] = collections.Counter()
        per_minute: collections.Counter[dt.datetime] = collections.Counter()
        for row in conn.execute(
            QUERIES["status_counts_and_throughput"], {"minutes": THROUGHPUT_MINUTES}
        ):
            counts[row["status"]] += row["events"]
            if row["minute"] is not None:
                per_minute[row["minute"]] += row["events"]
        oldest = conn.execute(QUERIES["oldest_due_queued"]).fetchone()
        # The registry's own reading, as `eventflo workers` shows it.
        running = registry.list_workers(conn, timeout=worker_timeout)
        recent = conn.execute(
            QUERIES["recent_events"],
            {"status": filters.status, "event_type": filters.event_type, "limit": RECENT_LIMIT},
        ).fetchall()
        failed = conn.execute(QUERIES["failed_events"], {"limit": FAILED_LIMIT}).fetchall()
        types = [
            row["event_type"]
            for row in conn.execute(QUERIES["recent_event_types"], {"scan": TYPE_SCAN})
        ]
        matches = conn.execute(QUERIES["rule_matches"], {"hours": RULE_MATCH_HOURS}).fetchall()
        active = conn.execute(QUERIES["active_rule_version"]).fetchone()
        # As `eventflo endpoints list` reads them.
        delivering_to = endpoints.list_endpoints(conn)
        undelivered = conn.execute(
            QUERIES["failed_deliveries"], {"limit": FAILED_DELIVERIES_LIMIT}
        ).fetchall()
    if filters.event_type and filters.event_type not in types:
        types = sorted([*types, filters.event_type])
    return Snapshot(
        now=now,
        counts={status: counts.get(status, 0) for status in events.STATUSES},
        oldest_due_since=oldest["since"] if oldest else None,
        throughput=chart.chart(chart.last_minutes(per_minute, now, THROUGHPUT_MINUTES)),
        live_workers=[worker for worker in running if worker.state == "live"],
        silent_workers=sum(1 for worker in running if worker.state == "silent"),
        recent=recent,
        failed=failed,
        event_types=types,
        rule_matches=_with_shares(matches),
        rules_version=ActiveVersion(**active) if active else None,
        endpoints=delivering_to,
        failed_deliveries=undelivered,
    )


def _with_shares(rows: list[dict[str, Any]]) -> list[RuleMatches]:
    total = sum(row["events"] for row in rows)
    return [RuleMatches(row["rule_id"], row["events"], row["events"] / total) for row in rows]
