CREATE INDEX events_listing_idx ON events (created_at DESC, id DESC);

CREATE OR REPLACE FUNCTION eventflo_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

DROP INDEX events_lease_idx;
CREATE INDEX events_lease_idx ON events (locked_until) WHERE status = 'processing';

ALTER TABLE events
    ALTER COLUMN event_type TYPE text,
    ALTER COLUMN source TYPE text,
    ALTER COLUMN payload TYPE jsonb,
    ALTER COLUMN idempotency_key TYPE text,
    ADD CONSTRAINT events_event_type_format CHECK (event_type ~ '^[a-z][a-z0-9_.-]{0,99}$'),
    ADD CONSTRAINT events_source_length CHECK (char_length(source) BETWEEN 1 AND 200),
    ADD CONSTRAINT events_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    ADD CONSTRAINT events_idempotency_key_length CHECK (char_length(idempotency_key) BETWEEN 1 AND 255);

DROP DOMAIN idempotency_key_text;
DROP DOMAIN event_payload;
DROP DOMAIN event_source_text;
DROP DOMAIN event_type_name;
