-- depends: 0004_lean_hot_path
-- The worker registry: one row per worker process. A worker inserts its row
-- at start, heartbeats it from its main loop (last_seen_at and its totals),
-- and sets stopped_at on a graceful stop. The lease rescue releases the
-- leases of a worker that stopped or went silent at once, instead of waiting
-- for them to expire; `eventflo workers` and /metrics read it.

CREATE TABLE workers (
    -- The worker id, as in events.locked_by and event_attempts.worker_id: host:pid:random.
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- Set by a graceful stop; a worker that died (kill -9, OOM, lost host)
    -- never sets it and goes silent instead.
    stopped_at   timestamptz,
    -- Events this worker completed.
    completed    bigint      NOT NULL DEFAULT 0,
    -- Attempts of this worker that ended failed or retried.
    failed       bigint      NOT NULL DEFAULT 0,

    CONSTRAINT workers_id_length CHECK (char_length(id) BETWEEN 1 AND 255),
    CONSTRAINT workers_host_length CHECK (char_length(host) BETWEEN 1 AND 255),
    CONSTRAINT workers_pid_positive CHECK (pid > 0),
    CONSTRAINT workers_counts_not_negative CHECK (completed >= 0 AND failed >= 0),
    CONSTRAINT workers_seen_after_start CHECK (last_seen_at >= started_at),
    CONSTRAINT workers_stopped_after_start CHECK (stopped_at >= started_at)
)
-- Every heartbeat rewrites its row, and no heartbeat changes an indexed
-- column: room on the page keeps those updates HOT (no index entries, and
-- the dead versions are pruned in place).
WITH (fillfactor = 50);

-- No index beyond the primary key, on purpose. The table holds one row per
-- worker process (finished ones are deleted after a while, see
-- eventflo/registry.py), and the queries that are not by id (the rescue's
-- stopped-or-silent workers, `eventflo workers`, /metrics) read all of it.
-- An index on last_seen_at would turn every heartbeat into a non-HOT update.
