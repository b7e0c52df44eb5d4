-- depends: 0002_create_event_processing_results
-- One row per finished attempt, written in the same transaction as the
-- outcome it records, so the history can never disagree with the status.

CREATE TYPE attempt_outcome AS ENUM (
    'completed',      -- the rules ran and the result was stored
    'retried',        -- an unexpected error; queued again after a back-off
    'failed',         -- a rule error, or the last allowed attempt erred
    'lease_expired'   -- the worker vanished; another worker rescued the event
);

CREATE TABLE event_attempts (
    -- A replay starts a new run whose attempt numbers begin at 1 again, so
    -- (event_id, attempt) is not unique over an event's life; id orders it.
    id          bigint          GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid            NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt     integer         NOT NULL CHECK (attempt >= 1),
    worker_id   text            NOT NULL,
    started_at  timestamptz     NOT NULL,
    finished_at timestamptz     NOT NULL DEFAULT now(),
    outcome     attempt_outcome NOT NULL,
    error       text,
    CONSTRAINT event_attempts_error_unless_completed CHECK ((outcome = 'completed') = (error IS NULL))
);

CREATE INDEX event_attempts_event_idx ON event_attempts (event_id, id);
