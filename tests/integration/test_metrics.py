"""GET /metrics as Prometheus reads it: the text format, figures that match the database."""

from __future__ import annotations

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from eventflo import registry
from tests.integration.test_api import post_event, run_worker_until_idle

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


def _scrape(client) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _one(samples, name, **labels):
    return samples[name][tuple(sorted(labels.items()))]


def test_an_empty_database_reports_zeros_for_every_status(client):
    samples = _scrape(client)
    assert _one(samples, "eventflo_database_up") == 1
    for status in ("queued", "processing", "completed", "failed"):
        assert _one(samples, "eventflo_events", status=status) == 0
    assert _one(samples, "eventflo_queue_depth") == 0
    assert _one(samples, "eventflo_oldest_due_event_age_seconds") == 0
    assert _one(samples, "eventflo_event_latency_seconds_count") == 0


def test_figures_follow_the_events_through_the_queue(client, config, conn):
    post_event(client, {"event_type": "payment_failed", "payload": {"amount": 5000}})
    post_event(client, {"event_type": "payment_failed", "payload": {"amount": 10}})
    post_event(client, {"event_type": "user_signup", "payload": {}})
    conn.execute(
        "UPDATE events SET created_at = created_at - interval '2 seconds',"
        " run_at = run_at - interval '2 seconds'"
    )

    queued = _scrape(client)
    assert _one(queued, "eventflo_events", status="queued") == 3
    assert _one(queued, "eventflo_queue_depth") == 3
    assert _one(queued, "eventflo_oldest_due_event_age_seconds") >= 2

    run_worker_until_idle(config)
    done = _scrape(client)
    assert _one(done, "eventflo_events", status="completed") == 3
    assert _one(done, "eventflo_queue_depth") == 0
    assert (
        _one(
            done,
            "eventflo_events_completed_total",
            event_type="payment_failed",
            severity="CRITICAL",
        )
        == 1
    )
    assert (
        _one(done, "eventflo_events_completed_total", event_type="payment_failed", severity="HIGH")
        == 1
    )
    assert (
        _one(done, "eventflo_events_completed_total", event_type="user_signup", severity="LOW") == 1
    )
    # Each took at least the 2 s its created_at was moved back.
    assert _one(done, "eventflo_event_latency_seconds_count") == 3
    assert _one(done, "eventflo_event_latency_seconds_bucket", le="1") == 0
    assert _one(done, "eventflo_event_latency_seconds_bucket", le="+Inf") == 3
    assert _one(done, "eventflo_event_latency_seconds_sum") >= 6


def test_completed_events_are_counted_by_the_rule_that_judged_them(client, config):
    for amount in (5000, 1000, 10):
        post_event(client, {"event_type": "payment_failed", "payload": {"amount": amount}})
    post_event(client, {"event_type": "sla_breach", "payload": {"minutes_over": 5}})
    post_event(client, {"event_type": "user_signup", "payload": {}})
    post_event(client, {"event_type": "page_view", "payload": {}})

    assert "eventflo_rule_matches_total" not in _scrape(client)  # nothing completed yet
    run_worker_until_idle(config)
    done = _scrape(client)

    assert done["eventflo_rule_matches_total"] == {
        (("rule", "payment_failed.large"), ("severity", "CRITICAL")): 2,
        (("rule", "payment_failed.small"), ("severity", "HIGH")): 1,
        (("rule", "sla_breach.minor"), ("severity", "WARNING")): 1,
        (("rule", "default"), ("severity", "LOW")): 2,
    }
    # The same events as the by-type counter, split another way.
    assert sum(done["eventflo_rule_matches_total"].values()) == sum(
        done["eventflo_events_completed_total"].values()
    )


def test_failed_events_are_counted_by_type(client, config, conn):
    post_event(client, {"event_type": "sla_breach", "payload": {}})
    conn.execute('UPDATE events SET payload = \'{"minutes_over": "lots"}\'')  # a rule error
    run_worker_until_idle(config)
    assert _one(_scrape(client), "eventflo_events_failed_total", event_type="sla_breach") == 1


def test_vacuum_health_figures_are_there(database_url, client):
    # A transaction left open in another session: the oldest transaction's age is above zero.
    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1")
        other.execute("SELECT pg_sleep(0.01)")
        samples = _scrape(client)
    assert _one(samples, "eventflo_oldest_transaction_age_seconds") > 0
    assert _one(samples, "eventflo_events_dead_tuples") >= 0


def test_a_database_outage_is_reported_not_hidden(make_app):
    client = make_app(database_url=UNREACHABLE, pool_timeout=1.0).test_client()
    samples = _scrape(client)
    assert _one(samples, "eventflo_database_up") == 0
    assert "eventflo_events" not in samples


def test_workers_are_counted_as_the_registry_judges_them(client, conn):
    for worker_id in ("host:1:live", "host:2:silent", "host:3:stopped"):
        registry.register(conn, worker_id=worker_id, host="host", pid=int(worker_id.split(":")[1]))
    conn.execute(
        "UPDATE workers SET started_at = now() - interval '10 minutes',"
        " last_seen_at = now() - interval '5 minutes' WHERE id = 'host:2:silent'"
    )
    conn.execute("UPDATE workers SET stopped_at = now() WHERE id = 'host:3:stopped'")
    samples = _scrape(client)
    assert _one(samples, "eventflo_workers", state="live") == 1
    assert _one(samples, "eventflo_workers", state="silent") == 1


def test_endpoints_and_their_pending_deliveries(client, conn):
    samples = _scrape(client)
    assert _one(samples, "eventflo_endpoints", state="enabled") == 0
    assert _one(samples, "eventflo_endpoints", state="disabled") == 0
    assert "eventflo_deliveries_pending" not in samples  # no endpoint, no series

    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES"
        " ('ops', 'https://ops.example/', 'slack'), ('old', 'https://old.example/', 'slack')"
    )
    conn.execute(
        "UPDATE endpoints SET enabled = false, disabled_at = now(), disabled_reason = 'test'"
        " WHERE name = 'old'"
    )
    for status, age in (("pending", "90 s"), ("pending", "10 s"), ("delivered", "1 hour")):
        conn.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, result, status, created_at,"
            " delivered_at) SELECT id, gen_random_uuid(), '{}', %s::delivery_status,"
            " now() - %s::interval, CASE WHEN %s = 'delivered' THEN now() END"
            " FROM endpoints WHERE name = 'ops'",
            [status, age, status],
        )
    samples = _scrape(client)
    assert _one(samples, "eventflo_endpoints", state="enabled") == 1
    assert _one(samples, "eventflo_endpoints", state="disabled") == 1
    assert _one(samples, "eventflo_deliveries_pending", endpoint="ops") == 2
    assert _one(samples, "eventflo_deliveries_pending", endpoint="old") == 0
    assert 90 <= _one(samples, "eventflo_oldest_pending_delivery_age_seconds", endpoint="ops") < 150
    assert _one(samples, "eventflo_oldest_pending_delivery_age_seconds", endpoint="old") == 0


def test_deliveries_by_endpoint_and_status_and_their_latency(client, conn):
    conn.execute(
        "INSERT INTO endpoints (name, url, format) VALUES ('ops', 'https://ops.example/', 'slack')"
    )
    for status, latency in (("delivered", "0.02 s"), ("delivered", "2 hours"), ("failed", None)):
        conn.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, result, status, created_at,"
            " delivered_at) SELECT id, gen_random_uuid(), '{}', %s::delivery_status,"
            " now() - coalesce(%s::interval, '0 s'),"
            " CASE WHEN %s = 'delivered' THEN now() END FROM endpoints",
            [status, latency, status],
        )
    samples = _scrape(client)
    assert _one(samples, "eventflo_deliveries_total", endpoint="ops", status="delivered") == 2
    assert _one(samples, "eventflo_deliveries_total", endpoint="ops", status="failed") == 1
    assert _one(samples, "eventflo_delivery_latency_seconds_count") == 2
    assert _one(samples, "eventflo_delivery_latency_seconds_bucket", le="0.05") == 1
    assert _one(samples, "eventflo_delivery_latency_seconds_bucket", le="7200") == 1
    assert _one(samples, "eventflo_delivery_latency_seconds_bucket", le="36000") == 2
    assert 7200 < _one(samples, "eventflo_delivery_latency_seconds_sum") < 7300
