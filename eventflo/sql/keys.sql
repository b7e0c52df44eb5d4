-- The queries of `eventflo keys`, as named blocks loaded by eventflo/sql/__init__.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.

-- name: create_key
-- Store a new key by its hash; the key itself is never stored.
INSERT INTO api_keys (name, scope, prefix, key_sha256)
VALUES (%(name)s, %(scope)s::api_key_scope, %(prefix)s, %(key_sha256)s)
RETURNING id, name, scope::text AS scope, prefix, created_at, revoked_at, last_used_at;

-- name: list_keys
-- Every key, newest first, without anything secret; revoked ones only when asked.
SELECT id, name, scope::text AS scope, prefix, created_at, revoked_at, last_used_at
FROM api_keys
WHERE %(include_revoked)s OR revoked_at IS NULL
ORDER BY id DESC;

-- name: find_key
-- The key a request presents, found by its hash, on a read-only database (a standby): no use noted.
SELECT id, name, scope::text AS scope, prefix, created_at, revoked_at, last_used_at
FROM api_keys
WHERE key_sha256 = %(key_sha256)s;

-- name: revoke_keys
-- Revoke the keys with this id or this prefix; a key revoked already keeps its first revocation time.
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id::text = %(key)s OR prefix = %(key)s
RETURNING id, name, scope::text AS scope, prefix, created_at, revoked_at, last_used_at;

-- name: authenticate_key
-- The key a request presents, found by its hash; notes its use at most once a minute.
-- Why a minute: a write on every request would cost every request a WAL flush
-- and make all requests of one key contend for its row.
WITH found AS MATERIALIZED (
    SELECT id, name, scope, prefix, created_at, revoked_at, last_used_at
    FROM api_keys
    WHERE key_sha256 = %(key_sha256)s
),
-- The row to touch, re-checked on the live row; one that another request (or a
-- revoke) holds is skipped: no request ever waits to note a use.
due AS (
    SELECT api_keys.id
    FROM api_keys
    JOIN found USING (id)
    WHERE api_keys.revoked_at IS NULL
      AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < now() - interval '1 minute')
    FOR UPDATE OF api_keys SKIP LOCKED
),
touched AS (
    UPDATE api_keys
    SET last_used_at = now()
    FROM due
    WHERE api_keys.id = due.id
    RETURNING api_keys.last_used_at
)
SELECT found.id, found.name, found.scope::text AS scope, found.prefix, found.created_at,
       found.revoked_at, coalesce((SELECT last_used_at FROM touched), found.last_used_at) AS last_used_at
FROM found;
