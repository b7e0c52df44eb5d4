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
touched AS (
    UPDATE api_keys
    SET last_used_at = now()
    FROM found
    WHERE api_keys.id = found.id
      AND found.revoked_at IS NULL
      AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
    RETURNING api_keys.last_used_at
)
SELECT found.id, found.name, found.scope::text AS scope, found.prefix, found.created_at,
       found.revoked_at, coalesce((SELECT last_used_at FROM touched), found.last_used_at) AS last_used_at
FROM found;
