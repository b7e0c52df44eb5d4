-- The queries behind the dashboard (/dashboard), as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
-- They run in one read-only snapshot per page, so the figures agree with each other.

-- name: now
-- The snapshot's clock: every age on the page is measured from it.
SELECT now() AS now;

-- name: status_counts_and_throughput
-- Events by status; the completed ones of the last minutes also by the minute they completed in.
-- One pass over the table serves both the counts and the throughput chart: counting
-- needs the whole table anyway, and no index serves completed_at.
SELECT status::text AS status,
       CASE
           WHEN status = 'completed'
            AND completed_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1)
           THEN date_trunc('minute', completed_at)
       END AS minute,
       count(*) AS events
FROM events
GROUP BY 1, 2;

-- name: oldest_due_queued
-- When the oldest due queued event became due (null when none is due); read from the claim index.
SELECT min(run_at) AS since
FROM events
WHERE status = 'queued' AND run_at <= now();

-- name: recent_events
-- The newest events, optionally of one status and one type, with their severity once completed.
-- Ids are UUIDv7 ordered by insert time, so the primary key serves as the listing index.
SELECT e.id, e.event_type, e.source, e.status::text AS status, e.attempts,
       e.created_at, e.updated_at, r.severity::text AS severity
FROM events AS e
LEFT JOIN event_processing_results AS r ON r.event_id = e.id AND e.status = 'completed'
WHERE (%(status)s::event_status IS NULL OR e.status = %(status)s::event_status)
  AND (%(event_type)s::text IS NULL OR e.event_type = %(event_type)s::text)
ORDER BY e.id DESC
LIMIT %(limit)s;

-- name: failed_events
-- The newest failed events with their error, through the partial index of failed events.
SELECT id, event_type, source, attempts, error_message, created_at, updated_at
FROM events
WHERE status = 'failed'
ORDER BY created_at DESC
LIMIT %(limit)s;

-- name: recent_event_types
-- The event types among the newest events, for the type filter (bounded: read through the primary key).
SELECT DISTINCT event_type
FROM (SELECT event_type FROM events ORDER BY id DESC LIMIT %(scan)s) AS newest
ORDER BY event_type;

-- name: rule_matches
-- Each rule's verdicts given in the last %(hours)s hours, most first: one pass over the results,
-- the narrow table (one row per judged event, its latest verdict), not over the events.
SELECT rule_id, count(*) AS events
FROM event_processing_results
WHERE processed_at >= now() - make_interval(hours => %(hours)s)
GROUP BY rule_id
ORDER BY events DESC, rule_id;

-- name: active_rule_version
-- The rule version the workers judge with now: its number and message, when and by whom it was made active.
SELECT a.version, v.message, a.activated_at, a.activated_by
FROM active_rule_version AS a
JOIN rule_versions AS v USING (version);

-- name: failed_deliveries
-- The newest failed deliveries, each endpoint's read from its partial index of failed ones
-- (a few rows each), so a refresh costs the same with millions of delivered rows.
SELECT d.id, e.name AS endpoint, d.event_id, d.attempts, d.last_status_code, d.last_error,
       d.updated_at
FROM endpoints AS e
CROSS JOIN LATERAL (
    SELECT *
    FROM deliveries
    WHERE endpoint_id = e.id AND status = 'failed'
    ORDER BY endpoint_id, id DESC
    LIMIT %(limit)s
) AS d
ORDER BY d.id DESC
LIMIT %(limit)s;
