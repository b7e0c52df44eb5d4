-- The stored events a backtest judges. Loaded by eventflo/backtest.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.

-- name: newest_events
-- The first batch: the newest events, whatever their status (ids are UUIDv7: newest is highest).
SELECT id, event_type, source, payload
FROM events
ORDER BY id DESC
LIMIT %(limit)s;

-- name: events_older_than
-- The next batch (keyset on the primary key): the events just older than the last one read.
SELECT id, event_type, source, payload
FROM events
WHERE id < %(before)s
ORDER BY id DESC
LIMIT %(limit)s;
