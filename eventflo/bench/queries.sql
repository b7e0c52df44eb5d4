-- The queries of `eventflo bench`, as named blocks loaded by eventflo/bench/__init__.py.
-- They live with the bench, not in eventflo/sql/: the product never runs them.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
-- Every block except the first four runs in the bench's scratch database, never in the user's.

-- name: create_database
-- The scratch database (the name is composed in, quoted as an identifier).
CREATE DATABASE {database};

-- name: drop_database
-- Drop the scratch database, disconnecting anything still attached to it.
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- name: leftover_databases
-- Scratch databases of earlier bench runs that were killed before they could clean up.
SELECT datname
FROM pg_database
WHERE starts_with(datname, %(prefix)s) AND datname <> %(current)s
ORDER BY datname;

-- name: scratch_statistics
-- Client sessions still attached to the scratch database, and its committed transactions so far.
SELECT (SELECT count(*)
        FROM pg_stat_activity
        WHERE datname = %(database)s AND backend_type = 'client backend') AS sessions,
       (SELECT xact_commit FROM pg_stat_database WHERE datname = %(database)s) AS commits;

-- name: server_settings
-- The settings a report must state: what a figure means depends on them.
SELECT current_setting('server_version') AS server_version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit;

-- name: may_checkpoint
-- Whether this role may run CHECKPOINT: a superuser, or a member of pg_checkpoint (PostgreSQL 15+).
SELECT rolsuper OR pg_has_role(current_user, 'pg_checkpoint', 'MEMBER') AS allowed
FROM pg_roles
WHERE rolname = current_user;

-- name: checkpoint
-- Write out the setup's dirty pages now, so the checkpoint they would trigger does not land in a timed run.
CHECKPOINT;

-- name: create_payload_functions
-- The generated events: a mix of the default rules' event types with small JSON payloads.
CREATE FUNCTION bench_event_type(i bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (ARRAY['payment_failed', 'sla_breach', 'system_error', 'user_signup'])[i % 4 + 1]
$$;
-- Every default rule matches some of them: large and small payments, major and
-- minor SLA breaches, system errors, and the catch-all.
CREATE FUNCTION bench_payload(i bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE i % 4
        WHEN 0 THEN jsonb_build_object('amount', (i * 37) % 2000, 'currency', 'EUR', 'customer_id', i)
        WHEN 1 THEN jsonb_build_object('minutes_over', i % 60, 'ticket', 'T-' || i)
        WHEN 2 THEN jsonb_build_object('service', 'billing-api', 'code', 500)
        ELSE jsonb_build_object('user_id', i, 'plan', 'free')
    END
$$;

-- name: payload_bytes
-- The mean size of the generated payloads as JSON text, for the report.
SELECT avg(octet_length(bench_payload(i)::text))::float8 AS bytes
FROM generate_series(1, 1000) AS i;

-- name: truncate_events
-- An empty queue: no events, results, attempts or deliveries.
TRUNCATE events, event_processing_results, event_attempts, deliveries, delivery_attempts;

-- name: delete_drained_events
-- Remove the events of the previous drain (their results and attempts go with them), keep the stored ones.
DELETE FROM events WHERE source = 'bench';

-- name: insert_queued_events
-- The backlog to drain: N queued events in one statement.
INSERT INTO events (event_type, source, payload)
SELECT bench_event_type(i), 'bench', bench_payload(i)
FROM generate_series(1, %(events)s) AS i;

-- name: insert_given_events
-- A backlog the caller made (the rules-drain mode's generated types): one event per array element, in one statement.
INSERT INTO events (event_type, source, payload)
SELECT event_type, 'bench', payload
FROM unnest(%(event_types)s::text[], %(payloads)s::jsonb[]) AS given (event_type, payload);

-- name: results_of_other_versions
-- Drained events whose result names another rule version than the one made active for the drain.
SELECT count(*) AS events
FROM events AS e
JOIN event_processing_results AS r ON r.event_id = e.id
WHERE e.source = 'bench' AND r.rules_version <> %(version)s;

-- name: steady_drain_window
-- The drain once every worker had finished its first batch (so had loaded and compiled the active rules): events finished after, and the time they took.
WITH warm AS (
    SELECT max(first_finished) AS since
    FROM (SELECT min(finished_at) AS first_finished FROM event_attempts GROUP BY worker_id) AS firsts
)
SELECT count(*) FILTER (WHERE a.finished_at > warm.since) AS events,
       extract(epoch FROM max(a.finished_at) - warm.since)::float8 AS seconds
FROM event_attempts AS a
CROSS JOIN warm
GROUP BY warm.since;

-- name: store_completed_events
-- History for the growth mode: completed events with their results and attempts, as a worker leaves them.
WITH stored AS (
    INSERT INTO events (event_type, source, payload, status, attempts, run_at,
                        created_at, updated_at, started_at, completed_at)
    SELECT bench_event_type(i), 'bench-stored', bench_payload(i), 'completed', 1, t, t, t, t, t
    FROM generate_series(1, %(rows)s) AS i,
         LATERAL (SELECT now() - make_interval(secs => %(rows)s - i)) AS past (t)
    RETURNING id, started_at, completed_at
),
results AS (
    -- Judged by the version the caller names (the active one), as a worker records it.
    INSERT INTO event_processing_results
        (event_id, severity, classification_reason, recommendation, should_escalate, rule_id,
         rules_version, processed_at)
    SELECT id, 'LOW', 'No specific rule for this event type', 'No action needed; keep for the record',
           false, 'default', %(rules_version)s, completed_at
    FROM stored
)
INSERT INTO event_attempts (event_id, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, 1, 'bench-stored', started_at, completed_at, 'completed'
FROM stored;

-- name: vacuum_events
-- Settle the freshly written tables (visibility map, hint bits, statistics) before a timed run.
VACUUM ANALYZE events, event_processing_results, event_attempts;

-- name: lock_events
-- The start gate: workers that try to claim wait here until every one of them is up.
LOCK TABLE events IN EXCLUSIVE MODE;

-- name: waiting_at_gate
-- Sessions waiting for a lock on a table (workers lined up at the start gate).
SELECT count(DISTINCT pid) AS waiting
FROM pg_locks
WHERE relation = %(table)s::regclass AND NOT granted;

-- name: queue_busy
-- Whether any event is still queued or processing; each half reads a small partial index.
SELECT EXISTS (SELECT 1 FROM events WHERE status = 'queued')
       OR EXISTS (SELECT 1 FROM events WHERE status = 'processing') AS busy;

-- name: drain_window
-- The drained events and the time the database saw them take: first claim to last completion.
SELECT count(*) AS events,
       extract(epoch FROM max(completed_at) - min(started_at))::float8 AS seconds
FROM events
WHERE source = 'bench';

-- name: verify_drain
-- Drained events not processed exactly once: completed in one attempt, one result row, one attempt row.
SELECT count(*) AS events,
       count(*) FILTER (WHERE e.status = 'completed' AND e.attempts = 1
                          AND r.event_id IS NOT NULL
                          AND a.rows = 1 AND a.completed = 1) AS exactly_once,
       count(*) FILTER (WHERE e.status <> 'completed') AS not_completed,
       count(*) FILTER (WHERE e.attempts <> 1) AS retried,
       count(*) FILTER (WHERE r.event_id IS NULL) AS without_result
FROM events AS e
LEFT JOIN event_processing_results AS r ON r.event_id = e.id
CROSS JOIN LATERAL (
    SELECT count(*) AS rows, count(*) FILTER (WHERE x.outcome = 'completed') AS completed
    FROM event_attempts AS x
    WHERE x.event_id = e.id
) AS a
WHERE e.source = 'bench';

-- name: create_floor_tables
-- The floor's own minimal queue: a jobs table with a partial index for the claim, and a results table.
CREATE TABLE bench_floor_jobs (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload   jsonb       NOT NULL,
    status    text        NOT NULL DEFAULT 'queued',
    locked_by text,
    locked_at timestamptz,
    done_at   timestamptz
);
CREATE INDEX bench_floor_jobs_queued_idx ON bench_floor_jobs (id) WHERE status = 'queued';
CREATE TABLE bench_floor_results (
    job_id     bigint      PRIMARY KEY,
    outcome    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- name: truncate_floor
-- An empty floor queue.
TRUNCATE bench_floor_jobs, bench_floor_results RESTART IDENTITY;

-- name: insert_floor_jobs
-- The floor's backlog: the same payloads as the drain's events.
INSERT INTO bench_floor_jobs (payload)
SELECT bench_payload(i)
FROM generate_series(1, %(events)s) AS i;

-- name: vacuum_floor
-- Settle the floor tables before a timed run, as vacuum_events does for the drain.
VACUUM ANALYZE bench_floor_jobs, bench_floor_results;

-- name: floor_claim
-- Claim a batch in one statement: the minimal loop the floor mode stands for.
UPDATE bench_floor_jobs
SET status = 'processing', locked_by = %(worker)s, locked_at = now()
WHERE id IN (
    SELECT id
    FROM bench_floor_jobs
    WHERE status = 'queued'
    ORDER BY id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, payload;

-- name: floor_complete
-- One result row per job and the jobs marked done, in one statement (one round trip, one transaction).
WITH done AS (
    UPDATE bench_floor_jobs
    SET status = 'done', locked_by = NULL, done_at = now()
    WHERE id = ANY (%(ids)s::bigint[])
    RETURNING id
)
INSERT INTO bench_floor_results (job_id, outcome)
SELECT r.job_id, r.outcome
FROM unnest(%(ids)s::bigint[], %(outcomes)s::text[]) AS r (job_id, outcome)
JOIN done ON done.id = r.job_id;

-- name: floor_window
-- The floor's jobs and the time the database saw them take: first claim to last completion.
SELECT count(*) AS events,
       extract(epoch FROM max(done_at) - min(locked_at))::float8 AS seconds
FROM bench_floor_jobs;

-- name: verify_floor
-- Floor jobs not processed exactly once: done with one result row.
SELECT count(*) AS events,
       count(*) FILTER (WHERE j.status = 'done' AND r.job_id IS NOT NULL) AS exactly_once
FROM bench_floor_jobs AS j
LEFT JOIN bench_floor_results AS r ON r.job_id = j.id;

-- name: listening_workers
-- Worker processes connected and listening for new events (their listeners' sessions).
SELECT count(*) AS listening
FROM pg_stat_activity
WHERE datname = current_database() AND starts_with(application_name, 'eventflo-listen ');

-- name: generated_events
-- The same event types and payloads as the other modes, for clients that send them one by one.
SELECT bench_event_type(i) AS event_type, bench_payload(i) AS payload
FROM generate_series(1, %(events)s) AS i;

-- name: insert_one_event
-- One event, committed on its own (the latency mode's database path).
INSERT INTO events (event_type, source, payload)
VALUES (%(event_type)s, 'bench', %(payload)s)
RETURNING id;

-- name: event_status
-- The status of one event, re-read after each wake-up.
SELECT status FROM events WHERE id = %(id)s;

-- name: listen_finished
-- Wake up when a worker finishes a batch (one NOTIFY per batch).
LISTEN eventflo_finished;

-- name: wakeup_seconds
-- Insert to claim as the database saw it: started_at minus created_at of the given events.
SELECT extract(epoch FROM started_at - created_at)::float8 AS seconds
FROM events
WHERE id = ANY (%(ids)s::uuid[]);

-- name: verify_ingest
-- Accepted events stored exactly once: rows with the answered ids, and all rows of the run.
SELECT count(*) FILTER (WHERE id = ANY (%(ids)s::uuid[])) AS accepted,
       count(*) AS events
FROM events
WHERE source = 'bench';

-- name: disable_notify_trigger
-- The ingest mode's comparison run: inserts without the NOTIFY wake-up.
ALTER TABLE events DISABLE TRIGGER events_notify_queued;

-- name: enable_notify_trigger
-- Back to normal after the run without NOTIFY.
ALTER TABLE events ENABLE TRIGGER events_notify_queued;

-- name: attempts_high_water
-- The newest finished attempt's id: an identity, so it counts attempts without a scan (the primary key's right edge).
SELECT coalesce(max(id), 0) AS attempts
FROM event_attempts;

-- name: keep_idle_transaction
-- The held snapshot's session must outlive a server-wide idle-in-transaction timeout.
SET LOCAL idle_in_transaction_session_timeout = 0;

-- name: take_snapshot
-- A long report's first read: under REPEATABLE READ it fixes the snapshot, kept until the transaction ends.
SELECT count(*) AS events
FROM events;

-- name: snapshot_age
-- Transactions since the held snapshot's horizon; no row, or NULL, if that session no longer holds it.
SELECT age(backend_xmin) AS transactions
FROM pg_stat_activity
WHERE pid = %(pid)s;

-- name: dead_tuples
-- Dead row versions in events as the statistics count them (backends report up to about a second late), and when.
SELECT n_dead_tup AS dead, now() AS at
FROM pg_stat_user_tables
WHERE relid = 'events'::regclass;

-- name: held_xmin_windows
-- Events completed in the first and the last window of the held-xmin run and in all of it, on the database's clock.
WITH run AS (
    -- The run starts at the first claim and ends when the producer stopped.
    SELECT min(started_at) AS started,
           %(ended)s::timestamptz AS ended,
           make_interval(secs => %(window_seconds)s) AS window_length
    FROM events
    WHERE source = 'bench'
)
SELECT count(*) FILTER (WHERE e.completed_at >= run.started
                          AND e.completed_at < run.started + run.window_length) AS first_window,
       count(*) FILTER (WHERE e.completed_at >= run.ended - run.window_length
                          AND e.completed_at < run.ended) AS last_window,
       count(*) FILTER (WHERE e.completed_at < run.ended) AS during_run,
       extract(epoch FROM run.ended - run.started)::float8 AS seconds
FROM run
JOIN events AS e ON e.source = 'bench'
GROUP BY run.started, run.ended, run.window_length;

-- name: finishing_workers
-- The workers that have finished events so far; a worker id names its host and process id.
SELECT DISTINCT worker_id
FROM event_attempts;

-- name: bare_insert_event
-- The ingest mode's bare endpoint (bare_api.py): one event in one autocommit statement, nothing else.
INSERT INTO events (event_type, source, payload)
VALUES (%(event_type)s, %(source)s, %(payload)s)
RETURNING id;

-- name: remove_bench_endpoints
-- The outbox-drain mode's endpoint, with its deliveries (there is no other endpoint in a scratch database).
DELETE FROM endpoints;

-- name: count_deliveries
-- The deliveries the last drain wrote.
SELECT count(*) AS deliveries FROM deliveries;

-- name: one_delivery_per_event
-- The deliver mode's backlog: one pending delivery per event, to the bench's endpoint.
INSERT INTO deliveries (endpoint_id, event_id, result)
SELECT ep.id, e.id,
       '{"severity": "CRITICAL", "classification_reason": "Payment of 1000 or more failed",
         "recommendation": "Escalate to the payments team", "should_escalate": true,
         "rule": "payment_failed.large", "rules_version": 1}'::jsonb
FROM events AS e CROSS JOIN endpoints AS ep;

-- name: deliveries_by_status
-- How far the deliverers are.
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM deliveries;

-- name: delivery_window
-- The deliveries/s window by the database's clock: first attempt's start to last delivery.
SELECT (SELECT count(*) FROM delivery_attempts) AS attempts,
       extract(epoch FROM (SELECT max(delivered_at) FROM deliveries)
                          - (SELECT min(started_at) FROM delivery_attempts))::float8 AS seconds;

-- name: insert_one_delivery
-- One event and its delivery, committed with the NOTIFY a worker's outcome sends.
WITH event AS (
    INSERT INTO events (event_type, source) VALUES ('payment_failed', 'bench') RETURNING id
),
delivery AS (
    INSERT INTO deliveries (endpoint_id, event_id, result)
    SELECT ep.id, event.id, '{"severity": "LOW", "classification_reason": "bench",
        "recommendation": "none", "should_escalate": false, "rule": "default",
        "rules_version": 1}'::jsonb
    FROM event, endpoints AS ep
    RETURNING id
)
SELECT delivery.id, pg_notify('eventflo_deliveries', '') FROM delivery;

-- name: delivery_latency
-- One delivery's created → delivered, by the database's clock (null until delivered).
SELECT extract(epoch FROM delivered_at - created_at)::float8 * 1000 AS ms
FROM deliveries WHERE id = %(id)s;

-- name: listening_deliverers
-- Deliverer processes connected and listening for new deliveries.
SELECT count(*) AS listening
FROM pg_stat_activity
WHERE datname = current_database() AND starts_with(application_name, 'eventflo-listen ')
  AND query LIKE '%%LISTEN eventflo_deliveries%%';
