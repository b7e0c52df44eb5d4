-- The worker registry's queries, as named blocks loaded by eventflo/registry.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
-- (The lease rescue, which reads the registry, is rescue_expired in queries.sql.)

-- name: heartbeat_worker
-- Register a starting worker, or record that it is alive with its totals; a deleted row comes back.
-- The totals are absolute, not increments: a heartbeat whose answer was lost
-- can be sent again without counting anything twice. greatest(): a server
-- clock stepping back must not make a heartbeat break the table's checks.
INSERT INTO workers AS w (id, host, pid, completed, failed)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(completed)s, %(failed)s)
ON CONFLICT (id) DO UPDATE
SET last_seen_at = greatest(w.last_seen_at, now()),
    stopped_at = NULL,
    reaped_reason = NULL,
    completed = excluded.completed,
    failed = excluded.failed;

-- name: stop_worker
-- Record a graceful stop with the final totals; the rescue releases at once anything the worker still holds.
UPDATE workers
SET stopped_at = greatest(now(), started_at),
    last_seen_at = greatest(last_seen_at, now()),
    reaped_reason = NULL,
    completed = %(completed)s,
    failed = %(failed)s
WHERE id = %(worker_id)s;

-- name: reap_worker
-- Record that a worker died (its supervisor saw it exit); a worker that recorded its own stop keeps it.
-- Once reaped, the rescue releases what it still holds at once (see rescue_expired).
UPDATE workers
SET stopped_at = greatest(now(), started_at),
    reaped_reason = %(reason)s
WHERE id = %(worker_id)s
  AND stopped_at IS NULL;

-- name: reap_silent_workers
-- Record as reaped the workers silent for long that hold no lease any more (the rescue released them); ids, reasons.
-- A silent worker that still holds leases stays silent until they are
-- released, and one silent for less than presumed_dead_after stays silent
-- too: it may hang rather than be dead, and operators are to see it. A worker
-- that comes back to life heartbeats, which clears the mark; its heartbeat
-- row lock makes this UPDATE re-check last_seen_at.
UPDATE workers AS w
SET stopped_at = greatest(now(), w.started_at),
    reaped_reason = 'silent for ' || round(extract(epoch FROM now() - w.last_seen_at))::bigint || ' s'
WHERE w.stopped_at IS NULL
  AND w.last_seen_at < now() - make_interval(secs => %(presumed_dead_after)s)
  AND NOT EXISTS (
      SELECT FROM events AS e WHERE e.status = 'processing' AND e.locked_by = w.id
  )
RETURNING w.id, w.reaped_reason;

-- name: list_workers
-- Running workers (live or silent) and, when asked, recently ended ones (stopped or reaped), oldest first; ages by the server's clock.
SELECT id, host, pid, started_at, last_seen_at, stopped_at, reaped_reason, completed, failed,
       extract(epoch FROM now() - last_seen_at)::float8 AS seen_seconds_ago,
       CASE WHEN reaped_reason IS NOT NULL THEN 'reaped'
            WHEN stopped_at IS NOT NULL THEN 'stopped'
            WHEN last_seen_at < now() - make_interval(secs => %(timeout)s) THEN 'silent'
            ELSE 'live'
       END AS state
FROM workers
WHERE CASE WHEN stopped_at IS NULL
           THEN last_seen_at >= now() - make_interval(secs => %(silent_retention)s)
           ELSE %(include_stopped)s
                AND stopped_at >= now() - make_interval(secs => %(stopped_retention)s)
      END
ORDER BY started_at, id;

-- name: prune_workers
-- Forget workers stopped (or reaped), or silent, for longer than the registry keeps them.
DELETE FROM workers
WHERE stopped_at < now() - make_interval(secs => %(stopped_retention)s)
   OR last_seen_at < now() - make_interval(secs => %(silent_retention)s);
