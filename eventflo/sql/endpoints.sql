-- The queries of `eventflo endpoints`, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
-- No query here returns a secret, but the two that make one (create, rotate).

-- name: create_endpoint
-- Register an endpoint; its name is unique (a duplicate is a unique violation).
INSERT INTO endpoints (name, url, format, filter, routing_key, secret)
VALUES (%(name)s, %(url)s, %(format)s::endpoint_format, %(filter)s, %(routing_key)s, %(secret)s)
RETURNING id;

-- name: list_endpoints
-- Every endpoint by name, with how many of its deliveries wait and how many failed.
SELECT e.id, e.name, e.url, e.format::text AS format, e.filter, e.routing_key,
       e.enabled, e.disabled_at, e.disabled_reason,
       e.last_success_at, e.failing_since, e.failure_streak,
       -- A rotation's overlap, while it lasts.
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_expires_at END
           AS rotation_ends_at,
       e.created_at, e.updated_at,
       (SELECT count(*) FROM deliveries AS d
        WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,  -- by their indexes
       (SELECT count(*) FROM deliveries AS d
        WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed
FROM endpoints AS e
WHERE %(name)s::text IS NULL OR e.name = %(name)s
ORDER BY e.name;

-- name: recent_deliveries
-- An endpoint's newest deliveries for `eventflo endpoints show`: its pending and failed ones
-- (each by its partial index) and any of the last hour (a range of the primary key: ids
-- are UUIDv7, so they start with their time). Bounded reads, however large the table.
WITH bound AS (
    SELECT (lpad(to_hex((extract(epoch FROM now() - interval '1 hour') * 1000)::bigint), 12, '0')
            || '00000000000000000000')::uuid AS hour_ago
),
recent AS (
    (SELECT id FROM deliveries
     WHERE endpoint_id = %(endpoint_id)s AND status = 'pending'
     ORDER BY endpoint_id, run_at DESC LIMIT %(limit)s)
    UNION
    (SELECT id FROM deliveries
     WHERE endpoint_id = %(endpoint_id)s AND status = 'failed'
     ORDER BY endpoint_id, id DESC LIMIT %(limit)s)
    UNION
    (SELECT id FROM deliveries, bound
     WHERE id >= bound.hour_ago AND endpoint_id = %(endpoint_id)s
     ORDER BY id DESC LIMIT %(limit)s)
)
SELECT d.id, d.event_id, d.status::text AS status, d.attempts, d.last_status_code,
       d.last_error, d.run_at, d.created_at, d.delivered_at
FROM deliveries AS d
WHERE d.id IN (SELECT id FROM recent)
ORDER BY d.id DESC
LIMIT %(limit)s;

-- name: disable_endpoint
-- Stop deliveries to an endpoint; one disabled already keeps its first reason and time.
-- FOR UPDATE first: it waits for the outbox inserts holding the row (FOR KEY SHARE), and
-- those that come after find it disabled. The UPDATE alone would not conflict with them.
WITH locked AS (
    SELECT id FROM endpoints WHERE name = %(name)s FOR UPDATE
)
UPDATE endpoints AS e
SET enabled = false,
    disabled_at = coalesce(e.disabled_at, now()),
    disabled_reason = coalesce(e.disabled_reason, %(reason)s),
    updated_at = now()
FROM locked
WHERE e.id = locked.id
RETURNING e.id;

-- name: enable_endpoint
-- Deliver to an endpoint again, with a clean failure record (or it would be disabled at once).
UPDATE endpoints
SET enabled = true, disabled_at = NULL, disabled_reason = NULL,
    failing_since = NULL, failure_streak = 0, paused_until = NULL, updated_at = now()
WHERE name = %(name)s
RETURNING id;

-- name: remove_endpoint
-- Remove an endpoint first: it waits for the outbox inserts that locked it, and none follows.
DELETE FROM endpoints
WHERE name = %(name)s
RETURNING id;

-- name: remove_endpoint_deliveries
-- Then its deliveries (and by cascade their attempts), those just committed included.
DELETE FROM deliveries
WHERE endpoint_id = %(endpoint_id)s;

-- name: rotate_secret
-- A new signing secret; the current one keeps signing beside it until the overlap ends.
UPDATE endpoints
SET previous_secret = secret,
    previous_secret_expires_at = now() + make_interval(secs => %(overlap_seconds)s),
    secret = %(secret)s,
    updated_at = now()
WHERE name = %(name)s AND format = 'standard'
RETURNING id, previous_secret_expires_at AS rotation_ends_at;

-- name: endpoint_format
-- The format of an endpoint, to say why it cannot be rotated.
SELECT format::text AS format FROM endpoints WHERE name = %(name)s;
