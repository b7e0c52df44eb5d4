-- Rule versions: stored, activated, read back. Loaded by eventflo/ruleversions.py.
-- A block starts with a line "-- name: <name>" followed by a one-line purpose.

-- name: lock_active
-- Take the active version FOR UPDATE: waits for claims in flight, and serializes applies and rollbacks.
-- The row alone: joined with rule_versions, a lock that waited for another
-- activation would re-check the join against a snapshot that lacks the
-- version just stored, and find no row.
SELECT version FROM active_rule_version FOR UPDATE;

-- name: version_sha256
-- The sha256 of one stored version (read after lock_active, in a snapshot that sees the newest).
SELECT sha256 FROM rule_versions WHERE version = %(version)s;

-- name: insert_version
-- Store the next version (numbers stay sequential: the caller holds lock_active).
INSERT INTO rule_versions (version, sha256, rules_text, message, created_by)
SELECT coalesce(max(version), 0) + 1, %(sha256)s, %(rules_text)s, %(message)s,
       coalesce(%(created_by)s, current_user)
FROM rule_versions
RETURNING version, sha256, message, created_by, created_at;

-- name: activate
-- Make a version active, log it and tell every API process (the caller holds lock_active).
WITH activated AS (
    UPDATE active_rule_version
    SET version = %(version)s,
        activated_by = coalesce(%(activated_by)s, current_user),
        activated_at = now()
    RETURNING version, activated_by, activated_at
),
logged AS (
    INSERT INTO rule_activations (version, previous_version, action, activated_by)
    SELECT version, %(previous_version)s, %(action)s, activated_by FROM activated
)
SELECT version, pg_notify('eventflo_rules', version::text) FROM activated;

-- name: first_version_with_sha256
-- The oldest version with this canonical form: what a worker pinned to a rule set records.
SELECT min(version) AS version FROM rule_versions WHERE sha256 = %(sha256)s;

-- name: active_version_number
-- The active version's number alone: the cheap check of API processes and of a worker that waits.
SELECT version FROM active_rule_version;

-- name: get_version
-- One stored version, with whether it is active.
SELECT v.version, v.sha256, v.rules_text, v.message, v.created_by, v.created_at,
       v.version = a.version AS active
FROM rule_versions AS v
CROSS JOIN active_rule_version AS a
WHERE v.version = %(version)s;

-- name: get_active_version
-- The active version, as GET /rules and `eventflo rules show` give it.
SELECT v.version, v.sha256, v.rules_text, v.message, v.created_by, v.created_at,
       true AS active, a.activated_by, a.activated_at
FROM active_rule_version AS a
JOIN rule_versions AS v USING (version);

-- name: list_versions
-- Every version, oldest first, with whether it is active.
SELECT v.version, v.sha256, v.message, v.created_by, v.created_at,
       v.version = a.version AS active
FROM rule_versions AS v
CROSS JOIN active_rule_version AS a
ORDER BY v.version;
