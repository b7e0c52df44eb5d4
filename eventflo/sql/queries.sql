-- Every query EventFlo runs, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.

-- name: insert_events
-- Store new events as queued in one statement (one NOTIFY); a row whose idempotency key exists is skipped.
WITH submitted AS MATERIALIZED (
    -- Ids are made here, not by the column default, so each input row can be
    -- matched to what was inserted and the answer keeps the request's order.
    SELECT eventflo_uuidv7() AS id, s.*
    FROM unnest(%(event_types)s::text[], %(sources)s::text[], %(payloads)s::jsonb[],
                %(idempotency_keys)s::text[], %(request_fingerprints)s::text[])
         WITH ORDINALITY AS s (event_type, source, payload, idempotency_key, request_fingerprint, position)
),
inserted AS (
    INSERT INTO events (id, event_type, source, payload, idempotency_key, request_fingerprint)
    SELECT id, event_type, source, payload, idempotency_key, request_fingerprint
    FROM submitted
    -- Keys in one global order: two batches sharing keys wait, never deadlock.
    ORDER BY idempotency_key, position
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status
)
SELECT s.position, i.id, i.status
FROM submitted AS s
LEFT JOIN inserted AS i ON i.id = s.id
ORDER BY s.position;

-- name: get_events_by_idempotency_keys
-- The events idempotency keys were first used for, to answer retried requests.
SELECT idempotency_key, id, status, request_fingerprint
FROM events
WHERE idempotency_key = ANY (%(idempotency_keys)s::text[]);

-- name: read_only_snapshot
-- First statement of a transaction whose reads must agree with each other.
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: get_event
-- One event with its result; the result shows only while the event is completed.
SELECT e.id, e.event_type, e.source, e.status, e.payload, e.attempts, e.error_message,
       e.created_at, e.updated_at, e.started_at, e.completed_at,
       r.severity, r.classification_reason, r.recommendation, r.should_escalate,
       r.rule_id, r.rules_version, r.processed_at
FROM events AS e
LEFT JOIN event_processing_results AS r ON r.event_id = e.id AND e.status = 'completed'
WHERE e.id = %(event_id)s;

-- name: get_event_status
-- The status alone, polled by GET /events/{id}?wait=.
SELECT status FROM events WHERE id = %(event_id)s;

-- name: list_event_attempts
-- The attempt history of one event, oldest first.
SELECT attempt, worker_id, started_at, finished_at, outcome, error
FROM event_attempts
WHERE event_id = %(event_id)s
ORDER BY id;

-- name: list_event_deliveries
-- The deliveries of one event's verdicts, oldest first, with their endpoint's name.
SELECT d.id AS delivery_id, e.name AS endpoint, d.status::text AS status, d.attempts,
       d.last_status_code, d.created_at, d.delivered_at
FROM deliveries AS d
JOIN endpoints AS e ON e.id = d.endpoint_id
WHERE d.event_id = %(event_id)s
ORDER BY d.id;

-- name: list_events
-- A page of events, newest first, after the keyset cursor (an event id) when one is given.
-- Ids are UUIDv7 ordered by insert time, so the primary key serves as the listing index.
SELECT id, event_type, status, created_at
FROM events
WHERE (%(status)s::event_status IS NULL OR status = %(status)s::event_status)
  AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s::text)
  AND (%(after_id)s::uuid IS NULL OR id < %(after_id)s::uuid)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: begin
-- Start a transaction by hand where psycopg's transaction() would cost round trips (queue.pipelined_transaction).
BEGIN;

-- name: commit
-- End the transaction queue.pipelined_transaction began.
COMMIT;

-- name: claim_events
-- Lease a batch of due queued events to one worker, count the attempt, name the rule version.
-- (Short comments: pg_stat_activity shows the first 1024 bytes, and tests look for the SET.)
WITH rules AS MATERIALIZED (
    -- Locked till the claim commits: activations wait (eventflo/ruleversions.py).
    SELECT version FROM active_rule_version FOR KEY SHARE
),
due AS MATERIALIZED (
    -- MATERIALIZED: run the locking subquery exactly once; inlined, the planner
    -- may re-evaluate it and claim more rows than the LIMIT.
    SELECT id
    FROM events
    WHERE status = 'queued'
      AND run_at <= now()
      -- Where the worker starts reading the claim index (queue.ClaimFloor):
      -- just below its previous batch, or from the front (null) on a sweep.
      AND run_at >= coalesce(%(not_before)s::timestamptz, '-infinity')
    ORDER BY run_at, id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
UPDATE events AS e
SET status = 'processing',
    attempts = e.attempts + 1,
    locked_by = %(worker_id)s,
    locked_until = now() + make_interval(secs => %(lease_seconds)s),
    started_at = now(),
    updated_at = now()
FROM due, rules
WHERE e.id = due.id
RETURNING e.id, e.event_type, e.source, e.payload, e.attempts, e.locked_until, e.run_at,
          rules.version,
          -- When it moves, the worker re-reads the endpoints (eventflo/outbox.py).
          (SELECT generation FROM endpoint_generation);

-- name: release_claims
-- Give a batch back untouched (the worker cannot load the active rules): queued again, the attempt not spent.
-- Other workers are woken: they may be able to.
WITH released AS (
    UPDATE events
    SET status = 'queued',
        attempts = attempts - 1,
        locked_by = NULL,
        locked_until = NULL,
        updated_at = now()
    WHERE locked_by = %(worker_id)s
      AND locked_until = %(locked_until)s
      AND status = 'processing'
      AND id = ANY (%(event_ids)s::uuid[])
    RETURNING id
)
SELECT count(*) AS released, pg_notify('eventflo_queued', '') FROM released;

-- name: complete_events
-- Mark a batch completed and record the attempts, fenced on this worker's lease; returns the events it still held.
-- No join with the batch's arrays: joined, a cached generic plan compared
-- every event with every verdict (quadratic in the batch size). The worker
-- pairs the returned ids with its verdicts, and store_results follows in the
-- same transaction.
WITH completed AS (
    -- The fence: only events still held under the lease the claim took,
    -- (locked_by, locked_until), which is also the lease index's key. An
    -- event whose lease was rescued (queued again, failed, or leased anew,
    -- even to this same worker) no longer matches.
    UPDATE events
    SET status = 'completed',
        locked_by = NULL,
        locked_until = NULL,
        error_message = NULL,
        completed_at = now(),
        updated_at = now()
    WHERE locked_by = %(worker_id)s
      AND locked_until = %(locked_until)s
      AND status = 'processing'
      AND id = ANY (%(event_ids)b::uuid[])
    RETURNING id, attempts, started_at
),
history AS (
    INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, outcome)
    SELECT id, attempts, %(worker_id)s, started_at, 'completed'
    FROM completed
)
SELECT id FROM completed;

-- name: store_results
-- The verdicts of the events complete_events just completed; a replayed event's earlier result is replaced.
-- Verdicts come once per rule, not once per event: each event names its
-- verdict by position, so a batch sends a handful of texts, not hundreds.
INSERT INTO event_processing_results AS r
    (event_id, severity, classification_reason, recommendation, should_escalate, rule_id,
     rules_version)
SELECT e.event_id,
       (%(severities)s::severity[])[e.verdict],
       (%(reasons)s::text[])[e.verdict],
       (%(recommendations)s::text[])[e.verdict],
       (%(escalates)s::boolean[])[e.verdict],
       (%(rule_ids)s::text[])[e.verdict],
       %(rules_version)s::integer
FROM unnest(%(event_ids)b::uuid[], %(verdicts)b::integer[]) AS e (event_id, verdict)
ON CONFLICT (event_id) DO UPDATE
SET severity = excluded.severity,
    classification_reason = excluded.classification_reason,
    recommendation = excluded.recommendation,
    should_escalate = excluded.should_escalate,
    rule_id = excluded.rule_id,
    rules_version = excluded.rules_version,
    processed_at = excluded.processed_at;

-- name: store_deliveries
-- The outbox: a delivery per completed event and matching endpoint, still enabled at commit.
-- Each endpoint is locked once (a remove waits for this commit, then deletes what it wrote);
-- results come once per distinct verdict, named by position, as in store_results; ids are
-- v7 UUIDs made by the worker.
WITH live AS MATERIALIZED (
    SELECT id FROM endpoints
    WHERE id = ANY (%(targets)s::uuid[]) AND enabled
    ORDER BY id  -- every lock on endpoints is taken in id order: no deadlock between them
    FOR KEY SHARE
)
INSERT INTO deliveries (id, endpoint_id, event_id, result)
SELECT d.id, d.endpoint_id, d.event_id, (%(results)s::jsonb[])[d.result]
FROM unnest(%(ids)b::uuid[], %(endpoint_ids)b::uuid[], %(event_ids)b::uuid[],
            %(positions)b::integer[])
     AS d (id, endpoint_id, event_id, result)
JOIN live ON live.id = d.endpoint_id;

-- name: fail_events
-- Record erred attempts of a batch: queue again after a back-off, or fail for good, fenced on the lease.
WITH erred AS (
    SELECT *
    FROM unnest(%(event_ids)s::uuid[], %(attempts)s::integer[], %(errors)s::text[],
                %(permanent)s::boolean[], %(backoff_seconds)s::float8[])
         AS x (event_id, attempt, error, permanent, backoff_seconds)
),
updated AS (
    UPDATE events AS e
    SET status = CASE WHEN x.permanent OR e.attempts >= %(max_attempts)s
                      THEN 'failed' ELSE 'queued' END::event_status,
        run_at = CASE WHEN x.permanent OR e.attempts >= %(max_attempts)s
                      THEN e.run_at ELSE now() + make_interval(secs => x.backoff_seconds) END,
        error_message = x.error,
        locked_by = NULL,
        locked_until = NULL,
        updated_at = now()
    FROM erred AS x
    WHERE e.id = x.event_id
      AND e.id = ANY (%(event_ids)s::uuid[])  -- fetch by primary key, as in complete_events
      AND e.status = 'processing'
      AND e.locked_by = %(worker_id)s
      AND e.attempts = x.attempt
    RETURNING e.id, e.attempts, e.started_at, e.status, x.error
),
history AS (
    INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, outcome, error)
    SELECT u.id, u.attempts, %(worker_id)s, u.started_at,
           CASE WHEN u.status = 'failed' THEN 'failed' ELSE 'retried' END::attempt_outcome,
           u.error
    FROM updated AS u
)
SELECT u.id, u.status FROM updated AS u;

-- name: listen_eventflo_queued
-- Workers wake up on new or replayed events.
LISTEN eventflo_queued;

-- name: listen_eventflo_finished
-- API processes wake long-polling requests when events finish.
LISTEN eventflo_finished;

-- name: listen_eventflo_deliveries
-- Deliverers wake up on new deliveries.
LISTEN eventflo_deliveries;

-- name: notify_deliveries
-- Wake the deliverers: one hint per batch that wrote deliveries.
SELECT pg_notify('eventflo_deliveries', '');

-- name: listen_eventflo_rules
-- API processes learn at once that another rule version became active.
LISTEN eventflo_rules;

-- name: forget_results
-- A replayed event that failed in its new run keeps no verdict from an earlier one.
DELETE FROM event_processing_results WHERE event_id = ANY (%(event_ids)s::uuid[]);

-- name: notify_finished
-- Wake API requests long-polling for a result; one hint per batch, never per event.
SELECT pg_notify('eventflo_finished', '');

-- name: rescue_expired
-- Give back events whose lease ran out or whose worker stopped, died or went silent: queued again, or failed when out of attempts.
-- With a holder, only that worker's events (its supervisor releasing a dead child's leases).
WITH gone AS MATERIALIZED (
    -- Registered workers that will not finish what they hold: they stopped,
    -- were reaped (seen dead), or sent no heartbeat within the timeout. Their
    -- leases go back at once, not when they expire. Computed once, so both
    -- steps below agree on it.
    SELECT id,
           CASE WHEN reaped_reason IS NOT NULL THEN 'reaped: ' || reaped_reason
                WHEN stopped_at IS NOT NULL THEN 'stopped'
                ELSE 'silent for ' || round(extract(epoch FROM now() - last_seen_at))::bigint || ' s'
           END AS why
    FROM workers
    WHERE stopped_at IS NOT NULL
       OR last_seen_at < now() - make_interval(secs => %(worker_timeout)s)
),
expired AS MATERIALIZED (
    -- Locked here so a worker that completes at this very moment either
    -- commits first (and the row no longer matches) or waits for us.
    -- Workers not in the registry keep the lease-expiry rule alone.
    SELECT id, locked_by, started_at
    FROM events
    WHERE status = 'processing'
      AND (locked_until < now() OR locked_by = ANY (ARRAY(SELECT id FROM gone)))
      AND (%(holder)s::text IS NULL OR locked_by = %(holder)s::text)
    ORDER BY locked_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE events AS e
    SET status = CASE WHEN e.attempts >= %(max_attempts)s
                      THEN 'failed' ELSE 'queued' END::event_status,
        error_message = coalesce(
            'lease released: worker ' || x.locked_by || ' ' || g.why,
            'lease expired: worker ' || x.locked_by || ' did not finish in time'),
        run_at = now(),
        locked_by = NULL,
        locked_until = NULL,
        updated_at = now()
    FROM expired AS x
    LEFT JOIN gone AS g ON g.id = x.locked_by
    WHERE e.id = x.id
      -- Re-check in the same statement: never overwrite an event that has
      -- just completed, or that is held under another lease by now.
      AND e.status = 'processing'
      AND e.locked_by = x.locked_by
      AND (e.locked_until < now() OR g.id IS NOT NULL)
    RETURNING e.id, e.attempts, e.status, e.error_message, x.locked_by, x.started_at
),
history AS (
    INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, outcome, error)
    SELECT r.id, r.attempts, r.locked_by, r.started_at, 'lease_expired', r.error_message
    FROM rescued AS r
)
SELECT r.id, r.status, r.locked_by, r.attempts, r.error_message AS reason,
       extract(epoch FROM now() - r.started_at)::float8 AS held_seconds
FROM rescued AS r;

-- name: select_replay_candidates
-- Events a replay would requeue: by status, type, creation time range, ids or rules version; never one in flight.
SELECT id
FROM events
WHERE status = ANY (%(statuses)s::event_status[])
  AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s::text)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s::timestamptz)
  AND (%(event_ids)s::uuid[] IS NULL OR id = ANY (%(event_ids)s::uuid[]))
  AND (%(rules_version_before)s::integer IS NULL OR EXISTS (
          SELECT 1 FROM event_processing_results AS r
          WHERE r.event_id = events.id AND r.rules_version < %(rules_version_before)s::integer))
ORDER BY created_at, id;

-- name: replay_events
-- Requeue the given events for a new run, re-checking their status so an event in flight is never touched.
WITH requeued AS (
    UPDATE events
    SET status = 'queued',
        attempts = 0,
        run_at = now(),
        error_message = NULL,
        completed_at = NULL,
        updated_at = now()
    WHERE id = ANY (%(event_ids)s::uuid[])
      AND status = ANY (%(statuses)s::event_status[])
    RETURNING id
)
SELECT count(*) AS requeued, pg_notify('eventflo_queued', '') FROM requeued;

-- name: count_by_status
-- How many events are in each status.
SELECT status, count(*) AS count FROM events GROUP BY status ORDER BY status;

-- name: count_by_severity
-- How many completed events got each severity.
SELECT r.severity, count(*) AS count
FROM event_processing_results AS r
JOIN events AS e ON e.id = r.event_id AND e.status = 'completed'
GROUP BY r.severity
ORDER BY r.severity;

-- name: oldest_queued_age
-- Seconds the oldest due queued event has waited (null when none is due).
SELECT extract(epoch FROM now() - min(run_at))::float8 AS seconds
FROM events
WHERE status = 'queued' AND run_at <= now();

-- name: applied_migrations
-- The migrations yoyo has applied to this database (readiness compares them with the files).
SELECT migration_id FROM _yoyo_migration;

-- name: enabled_endpoints
-- The endpoints a worker evaluates filters for; the outbox insert re-checks enabled at commit.
SELECT id, name, filter FROM endpoints WHERE enabled ORDER BY name;
