-- Retention: the queries of `eventflo purge`, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.
--
-- An event's age is measured from updated_at: for a finished event that is
-- when it finished (completed, failed, or failed by the lease rescue), since
-- nothing else updates a finished row; a replay makes it queued again, and
-- then it is not purgeable at all.
--
-- The scans walk the primary key, bounded by id_bound: ids are UUIDv7 made
-- from the server's clock when the row is inserted, and an event cannot
-- finish before it was inserted, so every event that finished before the
-- cutoff has an id below the bound. The bound keeps a purge off the young end
-- of the table (where the workers are busy) without an index of its own.

-- name: purge_cutoff
-- The age limit as a point in time on the server's clock, and the smallest id an event inserted after it can have.
SELECT cutoff,
       encode(
           -- 48 bits: the millisecond after the cutoff's; then nothing (the lowest id of that millisecond).
           substring(int8send(floor(extract(epoch FROM cutoff) * 1000)::bigint + 1) FROM 3)
           || decode(repeat('00', 10), 'hex'),
           'hex')::uuid AS id_bound
FROM (SELECT now() - make_interval(secs => %(older_than_seconds)s) AS cutoff) AS c;

-- name: count_purgeable
-- How many events a purge would delete now, by status (the dry run, the confirmation, what is left).
SELECT count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM events
WHERE id < %(id_bound)s::uuid
  AND status = ANY (%(statuses)s::event_status[])
  AND status IN ('completed', 'failed')
  AND updated_at < %(cutoff)s::timestamptz
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS d WHERE d.event_id = events.id AND d.status = 'pending'
  );

-- name: purge_batch
-- Delete the next batch of old finished events in one short transaction; results and attempts go by ON DELETE CASCADE.
WITH doomed AS MATERIALIZED (
    -- MATERIALIZED: lock exactly once, never more rows than the LIMIT (as
    -- claim_events). SKIP LOCKED: an event a worker, a replay or any other
    -- transaction holds is passed over, never waited for; the next run takes
    -- it if it is still old and finished. after_id resumes where the previous
    -- batch stopped, so no batch re-reads the index entries of deleted rows.
    SELECT id
    FROM events
    WHERE id > coalesce(%(after_id)s::uuid, '00000000-0000-0000-0000-000000000000')
      AND id < %(id_bound)s::uuid
      AND status = ANY (%(statuses)s::event_status[])
      -- Never an event that is waiting or in flight, whatever the caller asks.
      AND status IN ('completed', 'failed')
      AND updated_at < %(cutoff)s::timestamptz
      -- Kept while a delivery of its verdict waits: the deliverer reads the event to send it.
      AND NOT EXISTS (
          SELECT 1 FROM deliveries AS d WHERE d.event_id = events.id AND d.status = 'pending'
      )
    ORDER BY id
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
),
purged AS (
    DELETE FROM events AS e
    -- By primary key: a join with doomed could hash it against a scan of the table.
    WHERE e.id = ANY (ARRAY(SELECT id FROM doomed))
      -- Re-check in the statement that deletes: an event replayed (queued
      -- again) or finished anew since this statement's snapshot is kept.
      AND e.status = ANY (%(statuses)s::event_status[])
      AND e.status IN ('completed', 'failed')
      AND e.updated_at < %(cutoff)s::timestamptz
    RETURNING e.status
)
SELECT (SELECT count(*) FROM doomed) AS selected,
       (SELECT id FROM doomed ORDER BY id DESC LIMIT 1) AS last_id,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM purged;
