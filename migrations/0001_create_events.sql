-- The events table is the queue and the store at once: one row per accepted
-- event, claimed by workers with FOR UPDATE SKIP LOCKED.

-- UUIDv7 (RFC 9562): a 48-bit millisecond timestamp followed by random bits.
-- Ids that grow with time keep inserts on the right edge of the primary-key
-- B-tree instead of scattering them. PostgreSQL 18 has uuidv7(); 15 does not.
CREATE FUNCTION eventflo_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TYPE event_status AS ENUM ('queued', 'processing', 'completed', 'failed');

CREATE TABLE events (
    id                  uuid         PRIMARY KEY DEFAULT eventflo_uuidv7(),
    event_type          text         NOT NULL,
    source              text,
    payload             jsonb        NOT NULL DEFAULT '{}',
    status              event_status NOT NULL DEFAULT 'queued',
    -- attempts in the current run; a replay starts a new run at 0.
    attempts            integer      NOT NULL DEFAULT 0,
    run_at              timestamptz  NOT NULL DEFAULT now(),
    locked_by           text,
    locked_until        timestamptz,
    error_message       text,
    idempotency_key     text,
    -- sha256 of the request first sent with idempotency_key: a retry must match it.
    request_fingerprint text,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    started_at          timestamptz,
    completed_at        timestamptz,

    CONSTRAINT events_event_type_format CHECK (event_type ~ '^[a-z][a-z0-9_.-]{0,99}$'),
    CONSTRAINT events_source_length CHECK (char_length(source) BETWEEN 1 AND 200),
    CONSTRAINT events_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT events_attempts_not_negative CHECK (attempts >= 0),
    -- A lease exists exactly while a worker holds the event.
    CONSTRAINT events_processing_has_lease CHECK (
        (status = 'processing') = (locked_by IS NOT NULL AND locked_until IS NOT NULL)),
    CONSTRAINT events_processing_has_started CHECK (status <> 'processing' OR started_at IS NOT NULL),
    CONSTRAINT events_failed_has_error CHECK (status <> 'failed' OR error_message IS NOT NULL),
    CONSTRAINT events_completed_has_completed_at CHECK (status <> 'completed' OR completed_at IS NOT NULL),
    CONSTRAINT events_idempotency_key_length CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT events_idempotency_has_fingerprint CHECK (
        (idempotency_key IS NULL) = (request_fingerprint IS NULL))
)
-- Every claim and completion rewrites the row: leave room on the page so the
-- new version can stay there, and vacuum the dead ones early and without a
-- cost delay, because a queue that outruns vacuum slows down as it grows.
WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim query: due queued rows, oldest first. Partial, so it stays as
-- small as the backlog however many completed events the table keeps.
CREATE INDEX events_claim_idx ON events (run_at, id) WHERE status = 'queued';

-- The rescue query: leases that ran out.
CREATE INDEX events_lease_idx ON events (locked_until) WHERE status = 'processing';

-- GET /events, newest first, with keyset pagination on (created_at, id).
CREATE INDEX events_listing_idx ON events (created_at DESC, id DESC);

-- Replay and the failed-events views read only the (few) failed rows.
CREATE INDEX events_failed_idx ON events (created_at) WHERE status = 'failed';

-- Idempotency: one event per key, enforced by the database even when twenty
-- identical requests race.
CREATE UNIQUE INDEX events_idempotency_key_idx ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One NOTIFY per inserting statement, not per row: NOTIFY takes a global lock
-- at commit, so a per-row trigger would serialise batch inserts. The payload
-- is empty on purpose; it is a wake-up hint, the rows are the data.
CREATE FUNCTION eventflo_notify_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventflo_queued', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_queued
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION eventflo_notify_queued();
