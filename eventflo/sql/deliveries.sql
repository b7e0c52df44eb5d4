-- The queries of `eventflo deliveries`, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.

-- name: list_deliveries
-- Deliveries newest first, of one endpoint and one status when asked (each filter by its index:
-- pending and failed by their partial indexes, the rest by the primary key read backwards).
SELECT d.id, e.name AS endpoint, d.event_id, d.status::text AS status, d.attempts,
       d.last_status_code, d.last_error, d.run_at, d.created_at, d.updated_at, d.delivered_at
FROM deliveries AS d
JOIN endpoints AS e ON e.id = d.endpoint_id
WHERE (%(endpoint)s::text IS NULL OR e.name = %(endpoint)s)
  AND (%(status)s::delivery_status IS NULL OR d.status = %(status)s::delivery_status)
ORDER BY d.id DESC
LIMIT %(limit)s;

-- name: replay_delivery
-- Send one delivery again, whatever its status, in a new run (same id: the same webhook-id).
-- One being attempted right now (a lease held) is left alone.
UPDATE deliveries
SET status = 'pending', attempts = 0, run_at = now(), delivered_at = NULL, updated_at = now()
WHERE id = %(id)s
  AND (locked_until IS NULL OR locked_until < now())
RETURNING id;

-- name: replay_failed_deliveries
-- Send an endpoint's failed deliveries again (created at or after `since`, when given).
UPDATE deliveries AS d
SET status = 'pending', attempts = 0, run_at = now(), updated_at = now()
FROM endpoints AS e
WHERE e.name = %(endpoint)s
  AND d.endpoint_id = e.id
  AND d.status = 'failed'
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz)
RETURNING d.id;

-- name: count_failed_deliveries
-- What replay_failed_deliveries would requeue now (its dry run and its confirmation).
SELECT count(*) AS deliveries
FROM deliveries AS d
JOIN endpoints AS e ON e.id = d.endpoint_id
WHERE e.name = %(endpoint)s
  AND d.status = 'failed'
  AND (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s::timestamptz);

-- name: delivery_exists
-- Whether a delivery has this id (to tell "no such delivery" from "being sent now").
SELECT 1 AS found FROM deliveries WHERE id = %(id)s;

-- name: replay_failed_deliveries_by_id
-- Send these deliveries again if they are failed (the dashboard's Replay); the others are skipped.
UPDATE deliveries
SET status = 'pending', attempts = 0, run_at = now(), updated_at = now()
WHERE id = ANY (%(ids)s::uuid[])
  AND status = 'failed'
RETURNING id;
