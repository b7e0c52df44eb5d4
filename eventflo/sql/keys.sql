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
