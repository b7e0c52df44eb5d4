-- depends: 0005_create_workers
-- API keys: what a client will present as "Authorization: Bearer <key>".
-- Only a hash of each key is stored; the key itself is shown once, when
-- `eventflo keys create` makes it. Keys are 256 random bits, so one round of
-- SHA-256 is enough (a slow password hash protects guessable secrets).

CREATE TYPE api_key_scope AS ENUM (
    'ingest',   -- POST /events, POST /events/batch
    'read',     -- GET /events, GET /events/{id}, the dashboard's views
    'admin'     -- everything, replay included
);

CREATE TABLE api_keys (
    id           uuid          PRIMARY KEY DEFAULT eventflo_uuidv7(),
    name         text          NOT NULL,
    scope        api_key_scope NOT NULL,
    -- The key's first characters, to tell keys apart in lists and logs.
    prefix       text          NOT NULL,
    key_sha256   bytea         NOT NULL,
    created_at   timestamptz   NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,

    CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    CONSTRAINT api_keys_prefix_length CHECK (char_length(prefix) BETWEEN 8 AND 16),
    CONSTRAINT api_keys_sha256_length CHECK (octet_length(key_sha256) = 32),
    CONSTRAINT api_keys_revoked_after_created CHECK (revoked_at >= created_at)
);

-- A request's key is looked up by its hash.
CREATE UNIQUE INDEX api_keys_key_sha256_idx ON api_keys (key_sha256);
