-- depends: 0008_rule_versions
-- Delivery of verdicts: the endpoints operators register, and an outbox of
-- deliveries that the worker writes in the same transaction as the results
-- they carry, so a delivery exists if and only if its verdict committed.

CREATE TYPE endpoint_format AS ENUM (
    'standard',   -- a Standard Webhooks request, signed with the endpoint's secret
    'slack',      -- a Slack incoming-webhook message
    'pagerduty'   -- a PagerDuty Events API v2 trigger
);

CREATE TABLE endpoints (
    id          uuid            PRIMARY KEY DEFAULT eventflo_uuidv7(),
    name        text            NOT NULL,
    url         text            NOT NULL,
    format      endpoint_format NOT NULL DEFAULT 'standard',
    -- A CEL expression over `event` and `result`: the verdicts this endpoint receives.
    filter      text            NOT NULL DEFAULT 'result.should_escalate',
    -- PagerDuty's integration key; the pagerduty format has one, the others none.
    routing_key text,
    -- The signing secret of the standard format (whsec_ + base64), shown once when made.
    -- During a rotation the previous secret signs beside it until it expires.
    secret                     text,
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_at     timestamptz,
    -- Who or what disabled it: an operator, a 410 Gone, or failing for too long.
    disabled_reason text,
    -- Health, kept by the deliverers: the last success, and the failures since.
    last_success_at timestamptz,
    failing_since   timestamptz,
    failure_streak  integer     NOT NULL DEFAULT 0,
    -- A failing endpoint is backed off as a whole: no attempt to it before then.
    paused_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT endpoints_name_unique UNIQUE (name),
    CONSTRAINT endpoints_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    CONSTRAINT endpoints_url_http CHECK (url ~ '^https?://' AND char_length(url) <= 2048),
    CONSTRAINT endpoints_filter_length CHECK (char_length(filter) BETWEEN 1 AND 1000),
    CONSTRAINT endpoints_routing_key_pagerduty
        CHECK ((format = 'pagerduty') = (routing_key IS NOT NULL)),
    CONSTRAINT endpoints_routing_key_length CHECK (char_length(routing_key) BETWEEN 1 AND 128),
    CONSTRAINT endpoints_secret_standard CHECK ((format = 'standard') = (secret IS NOT NULL)),
    CONSTRAINT endpoints_secret_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/]{40,}={0,2}$'),
    CONSTRAINT endpoints_previous_secret_expires
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL)),
    CONSTRAINT endpoints_previous_secret_format
        CHECK (previous_secret ~ '^whsec_[A-Za-z0-9+/]{40,}={0,2}$'),
    CONSTRAINT endpoints_disabled_when
        CHECK (enabled = (disabled_at IS NULL) AND enabled = (disabled_reason IS NULL)),
    CONSTRAINT endpoints_failure_streak_nonnegative CHECK (failure_streak >= 0)
);

-- Exactly one row, counting the changes to what decides deliveries. The claim
-- returns it, so a worker re-reads the endpoints when an event it claimed was
-- claimed after an endpoint was added, removed, enabled, disabled or refiltered.
-- Health updates by the deliverers do not count: they touch other columns.
CREATE TABLE endpoint_generation (
    singleton  boolean PRIMARY KEY DEFAULT true CONSTRAINT endpoint_generation_one_row CHECK (singleton),
    generation bigint  NOT NULL DEFAULT 0
);
INSERT INTO endpoint_generation DEFAULT VALUES;

CREATE FUNCTION eventflo_endpoints_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE endpoint_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, format, filter, routing_key, enabled ON endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION eventflo_endpoints_changed();
CREATE TRIGGER endpoints_truncated
    AFTER TRUNCATE ON endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION eventflo_endpoints_changed();

CREATE TYPE delivery_status AS ENUM (
    'pending',    -- waiting for its next attempt (or being attempted: locked_by is set)
    'delivered',  -- the receiver answered 2xx
    'failed'      -- out of attempts, or its endpoint gone; kept and replayable
);

CREATE TABLE deliveries (
    -- Also the webhook-id a receiver sees: the same on every attempt, so it can dedupe.
    id          uuid            PRIMARY KEY DEFAULT eventflo_uuidv7(),
    -- No foreign key: its check would lock the endpoint's row once per delivery, and
    -- every worker writing to one endpoint would contend for that row (a multixact per
    -- batch, 100 times over). The outbox insert locks each endpoint it writes for once
    -- per batch instead (FOR KEY SHARE), and `eventflo endpoints remove` deletes the
    -- endpoint first and its deliveries after, so none is left without its endpoint.
    endpoint_id uuid            NOT NULL,
    -- No foreign key: purging old events keeps the record of what was sent about them.
    event_id    uuid            NOT NULL,
    -- The verdict as judged when the delivery was made (a replay judges again and
    -- makes new deliveries); the event itself never changes and is read when sending.
    result      jsonb           NOT NULL,
    status      delivery_status NOT NULL DEFAULT 'pending',
    -- Attempts in the current run: a replay starts a new run at 0 (as events.attempts).
    attempts    integer         NOT NULL DEFAULT 0,
    run_at      timestamptz     NOT NULL DEFAULT now(),
    locked_by    text,
    locked_until timestamptz,
    last_status_code integer,
    last_error  text,
    created_at  timestamptz     NOT NULL DEFAULT now(),
    updated_at  timestamptz     NOT NULL DEFAULT now(),
    delivered_at timestamptz,

    CONSTRAINT deliveries_result_object CHECK (jsonb_typeof(result) = 'object'),
    CONSTRAINT deliveries_attempts_nonnegative CHECK (attempts >= 0),
    CONSTRAINT deliveries_lease_pair CHECK ((locked_by IS NULL) = (locked_until IS NULL)),
    CONSTRAINT deliveries_lease_only_pending CHECK (status = 'pending' OR locked_by IS NULL),
    CONSTRAINT deliveries_delivered_at CHECK ((status = 'delivered') = (delivered_at IS NOT NULL)),
    CONSTRAINT deliveries_last_error_length CHECK (char_length(last_error) <= 1000)
);

-- The deliverers' claim, endpoint by endpoint: each one's pending deliveries by when
-- they are due (an endpoint backed off as a whole is skipped without reading its rows).
CREATE INDEX deliveries_pending_idx ON deliveries (endpoint_id, run_at) WHERE status = 'pending';
-- An endpoint's failed deliveries (`eventflo deliveries list|replay --status failed`).
CREATE INDEX deliveries_failed_idx ON deliveries (endpoint_id, id) WHERE status = 'failed';
-- An event's deliveries (GET /events/{id}).
CREATE INDEX deliveries_event_idx ON deliveries (event_id);
-- Three indexes, each written once per delivery at most: every one costs the drain.

-- One row per attempt to send a delivery: what the receiver answered, or why it did not.
-- `attempt` counts within a run, as deliveries.attempts does: a replay starts a new run.
CREATE TABLE delivery_attempts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   uuid        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       integer     NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    status_code   integer,
    -- The start of the receiver's answer, at most 1 KB: shown escaped, never executed.
    response_body text,
    error         text,

    CONSTRAINT delivery_attempts_attempt_positive CHECK (attempt >= 1),
    CONSTRAINT delivery_attempts_duration_nonnegative CHECK (duration_ms >= 0),
    CONSTRAINT delivery_attempts_response_body_size CHECK (octet_length(response_body) <= 1024),
    CONSTRAINT delivery_attempts_error_length CHECK (char_length(error) <= 1000),
    CONSTRAINT delivery_attempts_outcome CHECK (status_code IS NOT NULL OR error IS NOT NULL)
);

-- A delivery's attempts (its history), and the cascade when it is removed.
CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id);
