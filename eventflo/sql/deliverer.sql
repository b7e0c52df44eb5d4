-- The queries of the deliverer (eventflo/deliverer.py), as named blocks loaded by
-- eventflo/sql/__init__.py. A block starts with "-- name: <name>" and a one-line purpose.

-- name: claim_deliveries
-- Lease due deliveries, endpoint by endpoint: at most per_endpoint each, one (a probe) while
-- it fails, none while it is disabled or paused; with what sending them needs. (Each
-- deliverer process may send its own probe.)
WITH due AS MATERIALIZED (
    SELECT d.id
    FROM endpoints AS e
    CROSS JOIN LATERAL (
        SELECT id
        FROM deliveries
        WHERE endpoint_id = e.id
          AND status = 'pending'
          AND run_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
        ORDER BY run_at
        -- What this process may still start for the endpoint: its bound (1 while it
        -- fails) less the requests it already has in flight there.
        LIMIT greatest(0, CASE WHEN e.failure_streak > 0 THEN 1 ELSE %(per_endpoint)s END
                          - coalesce((SELECT busy.n
                                      FROM unnest(%(busy_endpoints)s::uuid[],
                                                  %(busy_counts)s::integer[]) AS busy (id, n)
                                      WHERE busy.id = e.id), 0))
        FOR UPDATE SKIP LOCKED
    ) AS d
    WHERE e.enabled
      AND (e.paused_until IS NULL OR e.paused_until <= now())
    LIMIT %(batch_size)s
),
claimed AS (
    UPDATE deliveries AS d
    SET locked_by = %(deliverer_id)s,
        locked_until = now() + make_interval(secs => %(lease_seconds)s),
        attempts = d.attempts + 1,
        updated_at = now()
    FROM due
    WHERE d.id = due.id
    RETURNING d.id, d.endpoint_id, d.event_id, d.result, d.attempts, d.locked_until,
              d.created_at
)
SELECT c.id, c.endpoint_id, c.event_id, c.result, c.attempts, c.locked_until, c.created_at,
       e.name AS endpoint, e.url, e.format::text AS format, e.routing_key, e.secret,
       e.failure_streak,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
           AS previous_secret,
       ev.event_type, ev.source, ev.payload, ev.created_at AS event_created_at
FROM claimed AS c
JOIN endpoints AS e ON e.id = c.endpoint_id
LEFT JOIN events AS ev ON ev.id = c.event_id;

-- name: record_attempts
-- Each attempt's outcome and its history row, fenced on the lease: a delivery whose lease
-- expired and was taken over meanwhile is left to its new holder.
WITH outcome AS (
    SELECT *
    FROM unnest(%(ids)s::uuid[], %(locked_until)s::timestamptz[], %(statuses)s::delivery_status[],
                %(delays)s::float8[], %(codes)s::integer[], %(errors)s::text[],
                %(bodies)s::text[], %(started_at)s::timestamptz[], %(durations)s::float8[])
         AS o (id, locked_until, status, delay, code, error, body, started_at, duration_ms)
),
updated AS (
    UPDATE deliveries AS d
    SET status = o.status,
        run_at = CASE WHEN o.status = 'pending'
                      THEN now() + make_interval(secs => o.delay) ELSE d.run_at END,
        locked_by = NULL,
        locked_until = NULL,
        last_status_code = o.code,
        last_error = o.error,
        delivered_at = CASE WHEN o.status = 'delivered' THEN now() END,
        updated_at = now()
    FROM outcome AS o
    WHERE d.id = o.id
      AND d.locked_by = %(deliverer_id)s
      AND d.locked_until = o.locked_until
    RETURNING d.id, d.attempts
)
INSERT INTO delivery_attempts
    (delivery_id, attempt, started_at, duration_ms, status_code, response_body, error)
SELECT u.id, u.attempts, o.started_at, o.duration_ms, o.code, o.body,
       CASE WHEN o.code IS NULL THEN coalesce(o.error, 'no answer') END
FROM updated AS u
JOIN outcome AS o ON o.id = u.id
RETURNING delivery_id;

-- name: lock_endpoints
-- First in a round's transaction, in id order: the same order as every other lock taken on
-- endpoints (outbox inserts, disables, removals), so none of them can deadlock with it.
-- The endpoints the round must write, and of those it may leave alone (successes on an
-- endpoint healthy when claimed, whose last success this process wrote within the second)
-- the ones failing or paused now: another deliverer's failures, which a success clears.
SELECT id FROM endpoints
WHERE id = ANY (%(must)s::uuid[])
   OR (id = ANY (%(may)s::uuid[]) AND (failure_streak > 0 OR paused_until IS NOT NULL))
ORDER BY id
FOR NO KEY UPDATE;

-- name: record_endpoint_health
-- An endpoint's health after a round of attempts: a success clears its failure record and its
-- pause; failures count, and pause it as a whole (never shortening a longer pause, such as a
-- Retry-After's). A pause of 0 is no pause: failures that are not the endpoint's fault.
-- An endpoint the round need not write (must false) is written only if it is failing or
-- paused now, as lock_endpoints locked it.
UPDATE endpoints AS e
SET last_success_at = CASE WHEN h.succeeded THEN now() ELSE e.last_success_at END,
    failure_streak = CASE WHEN h.succeeded THEN 0 ELSE e.failure_streak + h.failures END,
    failing_since = CASE WHEN h.succeeded THEN NULL ELSE coalesce(e.failing_since, now()) END,
    paused_until = CASE
        WHEN h.succeeded THEN NULL
        WHEN h.pause_seconds > 0
            THEN greatest(coalesce(e.paused_until, now()),
                          now() + make_interval(secs => h.pause_seconds))
        ELSE e.paused_until
    END
FROM unnest(%(endpoint_ids)s::uuid[], %(succeeded)s::boolean[], %(failures)s::integer[],
            %(pause_seconds)s::float8[], %(must)s::boolean[])
     AS h (endpoint_id, succeeded, failures, pause_seconds, must)
WHERE e.id = h.endpoint_id
  AND (h.must OR e.failure_streak > 0 OR e.paused_until IS NOT NULL);

-- name: disable_gone_endpoints
-- Disable the endpoints that answered 410 Gone (by id: one removed meanwhile is no error).
WITH locked AS (
    SELECT id FROM endpoints WHERE id = ANY (%(endpoint_ids)s::uuid[]) AND enabled
    ORDER BY id
    FOR UPDATE
)
UPDATE endpoints AS e
SET enabled = false, disabled_at = now(),
    disabled_reason = 'the endpoint answered 410 Gone', updated_at = now()
FROM locked
WHERE e.id = locked.id
RETURNING e.name;

-- name: disable_failing_endpoints
-- Disable the endpoints that have failed every attempt for longer than disable_after.
WITH locked AS (
    SELECT id, failing_since FROM endpoints
    WHERE enabled AND failing_since < now() - make_interval(secs => %(disable_after)s)
    ORDER BY id
    FOR UPDATE
)
UPDATE endpoints AS e
SET enabled = false,
    disabled_at = now(),
    disabled_reason = 'failed every attempt since '
                      || to_char(locked.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
                      || ' UTC',
    updated_at = now()
FROM locked
WHERE e.id = locked.id
RETURNING e.name, e.disabled_reason;
