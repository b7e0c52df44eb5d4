-- The queries behind GET /metrics, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
-- They run in one read-only snapshot per scrape, so the figures agree with each other.

-- name: events_by_status
-- How many events are in each status (every status appears, zero included).
SELECT s.status::text AS status, count(e.id) AS events
FROM unnest(enum_range(NULL::event_status)) AS s (status)
LEFT JOIN events AS e ON e.status = s.status
GROUP BY s.status
ORDER BY s.status;

-- name: due_events
-- Queued events whose run_at has come, and the age of the oldest (null when none is due).
SELECT count(*) AS events,
       extract(epoch FROM now() - min(run_at))::float8 AS oldest_age_seconds
FROM events
WHERE status = 'queued' AND run_at <= now();

-- name: completed_by_type_rule_severity_and_latency
-- Completed events by type, rule, severity and latency bucket (index into the bounds, as width_bucket
-- gives it). The rule adds few groups: a type's events match a handful of rules.
SELECT e.event_type,
       r.rule_id,
       r.severity::text AS severity,
       width_bucket(extract(epoch FROM e.completed_at - e.created_at)::float8,
                    %(bounds)s::float8[]) AS bucket,
       count(*) AS events,
       sum(extract(epoch FROM e.completed_at - e.created_at))::float8 AS seconds
FROM events AS e
JOIN event_processing_results AS r ON r.event_id = e.id
WHERE e.status = 'completed'
GROUP BY 1, 2, 3, 4;

-- name: failed_by_type
-- Failed events by type (read through the small partial index of failed events).
SELECT event_type, count(*) AS events
FROM events
WHERE status = 'failed'
GROUP BY event_type;

-- name: hot_table_tuples
-- Live and dead row versions of events, as the statistics collector last counted them.
SELECT n_live_tup AS live, n_dead_tup AS dead
FROM pg_stat_user_tables
WHERE relid = 'events'::regclass;

-- name: oldest_transaction_age
-- Seconds the oldest open transaction in this database has run (it holds back vacuum), ours excluded.
SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8 AS seconds
FROM pg_stat_activity
WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid();

-- name: endpoints_and_pending_deliveries
-- Each endpoint, enabled or not, with its pending deliveries and the oldest one's age
-- (through the pending index: the read grows with what waits, not with history).
SELECT e.name, e.enabled,
       count(d.id) AS pending,
       coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_age_seconds
FROM endpoints AS e
LEFT JOIN deliveries AS d ON d.endpoint_id = e.id AND d.status = 'pending'
GROUP BY e.id, e.name, e.enabled
ORDER BY e.name;

-- name: deliveries_by_endpoint_status_and_latency
-- Stored deliveries by endpoint and status, and the delivered ones by latency bucket
-- (created → delivered), in one pass: like the events' counters, it reads what is stored.
SELECT e.name AS endpoint, d.status::text AS status, count(*) AS deliveries,
       width_bucket(extract(epoch FROM d.delivered_at - d.created_at)::float8,
                    %(bounds)s::float8[]) AS bucket,
       sum(extract(epoch FROM d.delivered_at - d.created_at))::float8 AS seconds
FROM deliveries AS d
JOIN endpoints AS e ON e.id = d.endpoint_id
GROUP BY e.name, d.status, bucket;
