"""GET /metrics in Prometheus text format, read from the database at each scrape.

Every figure comes from PostgreSQL in one read-only snapshot, none from
counters kept in this process: under gunicorn several processes answer
scrapes, and workers run in other processes on other hosts, so no process
sees everything, while every process that asks the database answers the
same. The price is a scrape that reads the stored completed events; the
README's Metrics section says how much, and retention keeps it bounded.

The endpoint needs no API key, like /healthz: a key is checked against the
database, so a scrape that needed one would fail exactly when
``eventflo_database_up 0`` matters. It shows counts, never an event's data;
restrict it at the network or proxy, as is usual for Prometheus targets.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import flask
from flask_smorest import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from eventflo import appstate, auth, db, events, registry
from eventflo.config import Config
from eventflo.errors import DatabaseUnavailable
from eventflo.sql import load

log = logging.getLogger(__name__)

QUERIES = load("metrics.sql")

# Seconds from an event's insert to its completion: an idle system answers in
# milliseconds, a backlog in seconds or minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Seconds from a verdict to its receiver's 2xx: milliseconds when all is well, hours while
# an endpoint is down and retried on the schedule.
DELIVERY_LATENCY_BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0, 1800.0, 7200.0, 36000.0, 86400.0
)  # fmt: skip

blp = Blueprint("metrics", __name__, description="Prometheus metrics")


@blp.route("/metrics")
@auth.public
@blp.response(200, description="Prometheus text format", content_type=CONTENT_TYPE_LATEST)
def metrics() -> Any:
    """Queue, throughput, latency, workers and vacuum health, read from the database."""
    state = appstate.current()
    families = scrape(state.pool, state.config)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return flask.Response(
        generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST
    )


class _Families:
    """A collector that hands prometheus_client the families one scrape read."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def scrape(pool: db.Pool, config: Config) -> list[Metric]:
    """All families; only ``eventflo_database_up 0`` when the database does not answer.

    A scrape that fails outright would hide which part failed: Prometheus
    sees the process up and the database down.
    """
    up = GaugeMetricFamily("eventflo_database_up", "1 if the database answered this scrape, else 0")
    try:
        with db.borrow(pool) as conn, conn.transaction():
            events.read_one_snapshot(conn)
            families = _read(conn, config)
    except DatabaseUnavailable as exc:
        log.warning("metrics: the database did not answer: %s", exc)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [up, *families]


def _one_row(conn: db.Connection, query: str) -> db.Row:
    """The row of an aggregate without GROUP BY, which always has exactly one."""
    row = conn.execute(QUERIES[query]).fetchone()
    if row is None:
        raise RuntimeError(f"{query} returned no row")
    return row


def _read(conn: db.Connection, config: Config) -> list[Metric]:
    by_status = GaugeMetricFamily("eventflo_events", "Stored events by status", labels=["status"])
    for row in conn.execute(QUERIES["events_by_status"]):
        by_status.add_metric([row["status"]], row["events"])

    due = _one_row(conn, "due_events")
    queue_depth = GaugeMetricFamily(
        "eventflo_queue_depth", "Queued events that are due (run_at has come)", value=due["events"]
    )
    oldest_due = GaugeMetricFamily(
        "eventflo_oldest_due_event_age_seconds",
        "How long the oldest due queued event has waited (0 when none is due)",
        value=due["oldest_age_seconds"] or 0.0,
    )

    completed = CounterMetricFamily(
        "eventflo_events_completed",
        "Stored completed events by type and severity (falls when retention deletes events)",
        labels=["event_type", "severity"],
    )
    by_rule = CounterMetricFamily(
        "eventflo_rule_matches",
        "Stored completed events by the rule that judged them and its severity"
        " (falls when retention deletes events)",
        labels=["rule", "severity"],
    )
    latency = _latency_and_completed(conn, completed, by_rule)

    failed = CounterMetricFamily(
        "eventflo_events_failed",
        "Stored failed events by type (falls when events are replayed or deleted)",
        labels=["event_type"],
    )
    for row in conn.execute(QUERIES["failed_by_type"]):
        failed.add_metric([row["event_type"]], row["events"])

    workers = GaugeMetricFamily(
        "eventflo_workers",
        "Running registered workers: live (recent heartbeat) or silent",
        labels=["state"],
    )
    # The registry's own reading, as `eventflo workers` and the dashboard show it.
    running = registry.list_workers(conn, timeout=config.worker_timeout)
    for state in ("live", "silent"):
        workers.add_metric([state], sum(1 for worker in running if worker.state == state))

    tuples = conn.execute(QUERIES["hot_table_tuples"]).fetchone()
    dead = GaugeMetricFamily(
        "eventflo_events_dead_tuples",
        "Dead row versions in the events table, as last counted by PostgreSQL",
        value=tuples["dead"] if tuples else 0,
    )
    oldest_xact = GaugeMetricFamily(
        "eventflo_oldest_transaction_age_seconds",
        "Age of the oldest open transaction in this database (it holds back vacuum)",
        value=_one_row(conn, "oldest_transaction_age")["seconds"],
    )
    return [
        by_status,
        queue_depth,
        oldest_due,
        completed,
        by_rule,
        latency,
        failed,
        workers,
        dead,
        oldest_xact,
        *_deliveries(conn),
    ]


def _deliveries(conn: db.Connection) -> list[Metric]:
    """Endpoints by state, and what waits to be delivered to each."""
    endpoints = GaugeMetricFamily(
        "eventflo_endpoints", "Registered endpoints: enabled or disabled", labels=["state"]
    )
    pending = GaugeMetricFamily(
        "eventflo_deliveries_pending",
        "Deliveries waiting to be sent, by endpoint",
        labels=["endpoint"],
    )
    oldest = GaugeMetricFamily(
        "eventflo_oldest_pending_delivery_age_seconds",
        "How long each endpoint's oldest pending delivery has waited since its verdict (0: none)",
        labels=["endpoint"],
    )
    states = {"enabled": 0, "disabled": 0}
    for row in conn.execute(QUERIES["endpoints_and_pending_deliveries"]):
        states["enabled" if row["enabled"] else "disabled"] += 1
        pending.add_metric([row["name"]], row["pending"])
        oldest.add_metric([row["name"]], row["oldest_age_seconds"])
    for state, count in states.items():
        endpoints.add_metric([state], count)
    return [endpoints, pending, oldest, *_delivery_outcomes(conn)]


def _delivery_outcomes(conn: db.Connection) -> list[Metric]:
    """Deliveries by endpoint and status, and the latency of the delivered ones, in one pass."""
    by_status = CounterMetricFamily(
        "eventflo_deliveries",
        "Stored deliveries by endpoint and status (falls when endpoints are removed)",
        labels=["endpoint", "status"],
    )
    per_status: collections.Counter[tuple[str, str]] = collections.Counter()
    per_bucket = [0] * (len(DELIVERY_LATENCY_BUCKETS) + 1)
    total_seconds = 0.0
    rows = conn.execute(
        QUERIES["deliveries_by_endpoint_status_and_latency"],
        {"bounds": list(DELIVERY_LATENCY_BUCKETS)},
    )
    for row in rows:
        per_status[(row["endpoint"], row["status"])] += row["deliveries"]
        if row["status"] == "delivered" and row["bucket"] is not None:
            per_bucket[row["bucket"]] += row["deliveries"]
            total_seconds += row["seconds"] or 0.0
    for (endpoint, status), count in sorted(per_status.items()):
        by_status.add_metric([endpoint, status], count)
    return [
        by_status,
        _histogram(
            "eventflo_delivery_latency_seconds",
            "Seconds from a verdict to its receiver's 2xx, over the stored delivered deliveries",
            DELIVERY_LATENCY_BUCKETS,
            per_bucket,
            total_seconds,
        ),
    ]


def _histogram(
    name: str, documentation: str, bounds: Sequence[float], per_bucket: Sequence[int], total: float
) -> Metric:
    """A Prometheus histogram from per-bucket counts (``width_bucket``: 0 below the first bound)."""
    cumulative, running = [], 0
    for bound, count in zip(bounds, per_bucket, strict=False):
        running += count
        cumulative.append((_le(bound), running))
    cumulative.append(("+Inf", sum(per_bucket)))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=total)


def _latency_and_completed(
    conn: db.Connection, completed: CounterMetricFamily, by_rule: CounterMetricFamily
) -> Metric:
    """One pass over the completed events fills both counters and builds the latency histogram."""
    per_bucket = [0] * (len(LATENCY_BUCKETS) + 1)  # width_bucket: 0 below the first bound
    per_label: collections.Counter[tuple[str, str]] = collections.Counter()
    per_rule: collections.Counter[tuple[str, str]] = collections.Counter()
    total_seconds = 0.0
    rows = conn.execute(
        QUERIES["completed_by_type_rule_severity_and_latency"], {"bounds": list(LATENCY_BUCKETS)}
    )
    for row in rows:
        per_label[(row["event_type"], row["severity"])] += row["events"]
        per_rule[(row["rule_id"], row["severity"])] += row["events"]
        per_bucket[row["bucket"]] += row["events"]
        total_seconds += row["seconds"] or 0.0
    for (event_type, severity), count in sorted(per_label.items()):
        completed.add_metric([event_type, severity], count)
    for (rule_id, severity), count in sorted(per_rule.items()):
        by_rule.add_metric([rule_id, severity], count)
    # Prometheus buckets are cumulative ("le"): events at or under each bound.
    return _histogram(
        "eventflo_event_latency_seconds",
        "Seconds from an event's insert to its completion, over the stored completed events",
        LATENCY_BUCKETS,
        per_bucket,
        total_seconds,
    )


def _le(bound: float) -> str:
    return f"{bound:g}"
