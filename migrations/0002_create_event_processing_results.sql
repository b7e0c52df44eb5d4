-- depends: 0001_create_events
-- The rules engine's verdict: at most one row per event. A reprocessed event
-- replaces its row in the transaction that completes it again.

CREATE TYPE severity AS ENUM ('LOW', 'WARNING', 'HIGH', 'CRITICAL');

CREATE TABLE event_processing_results (
    event_id              uuid        PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    severity              severity    NOT NULL,
    classification_reason text        NOT NULL,
    recommendation        text        NOT NULL,
    should_escalate       boolean     NOT NULL,
    rule_id               text        NOT NULL,
    processed_at          timestamptz NOT NULL DEFAULT now()
);
