-- depends: 0007_workers_reaped
-- Rule sets as data: immutable, numbered versions of a rule file, the one
-- active version every worker and API process follows, a log of activations,
-- and on every result the version that judged it. The shipped default set is
-- version 1 and active, so an upgraded installation judges exactly as before.

CREATE TABLE rule_versions (
    version    integer     PRIMARY KEY CONSTRAINT rule_versions_version_positive CHECK (version >= 1),
    -- Of the canonical form (RuleSet.canonical()): equal files hash alike whatever their comments.
    sha256     text        NOT NULL CONSTRAINT rule_versions_sha256_hex CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- The file as its author wrote it (comments too): what `eventflo rules show` prints.
    rules_text text        NOT NULL
        CONSTRAINT rule_versions_rules_text_size CHECK (octet_length(rules_text) BETWEEN 1 AND 1048576),
    message    text        NOT NULL DEFAULT ''
        CONSTRAINT rule_versions_message_length CHECK (char_length(message) <= 1000),
    created_by text        NOT NULL
        CONSTRAINT rule_versions_created_by_length CHECK (char_length(created_by) BETWEEN 1 AND 255),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rule_versions_sha256_idx ON rule_versions (sha256);

-- A version is a record of what judged events: once stored it never changes.
CREATE FUNCTION eventflo_rule_versions_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rule versions are immutable; store a new version instead';
END
$$;

CREATE TRIGGER rule_versions_immutable
    BEFORE UPDATE OR DELETE ON rule_versions
    FOR EACH ROW EXECUTE FUNCTION eventflo_rule_versions_immutable();

-- Exactly one row. Every claim reads it FOR KEY SHARE in the claim statement;
-- an activation takes it FOR UPDATE first, so it waits for the claims in
-- flight, and a claim that waited re-reads the new version.
CREATE TABLE active_rule_version (
    singleton    boolean     PRIMARY KEY DEFAULT true CONSTRAINT active_rule_version_one_row CHECK (singleton),
    version      integer     NOT NULL REFERENCES rule_versions (version),
    activated_by text        NOT NULL
        CONSTRAINT active_rule_version_activated_by_length CHECK (char_length(activated_by) BETWEEN 1 AND 255),
    activated_at timestamptz NOT NULL DEFAULT now()
);

-- Who made which version active, and when: applies and rollbacks alike.
CREATE TABLE rule_activations (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version          integer     NOT NULL REFERENCES rule_versions (version),
    previous_version integer     REFERENCES rule_versions (version),
    action           text        NOT NULL
        CONSTRAINT rule_activations_action CHECK (action IN ('install', 'apply', 'rollback')),
    activated_by     text        NOT NULL
        CONSTRAINT rule_activations_activated_by_length CHECK (char_length(activated_by) BETWEEN 1 AND 255),
    activated_at     timestamptz NOT NULL DEFAULT now()
);

-- The shipped rule set, eventflo/rules/default.yaml, exactly as the package has it
-- (a test compares the two, so they cannot drift apart).
INSERT INTO rule_versions (version, sha256, rules_text, message, created_by)
VALUES (1, '8c745da5824bd33f3b8f335894c9a8866c4b128d35551dd3dad5ed7684e5b61e', $rules$# The shipped rule set: the verdicts EventFlo gives out of the box.
# Copy it as a starting point for your own (see "Writing rules" in the docs).
fields:
  payment_failed:
    amount: {type: number, default: 0}        # a missing amount counts as 0
  sla_breach:
    minutes_over: {type: number, default: 0}  # a missing minutes_over counts as 0

rules:                                        # in order; the first match wins
  - id: payment_failed.large
    event_type: payment_failed
    when: payload.amount >= 1000
    severity: CRITICAL
    escalate: true
    reason: "Payment of 1000 or more failed"
    recommendation: "Page the on-call payments engineer and contact the customer"

  - id: payment_failed.small
    event_type: payment_failed
    severity: HIGH
    escalate: false
    reason: "Payment under 1000 failed"
    recommendation: "Retry the charge and notify the customer"

  - id: sla_breach.major
    event_type: sla_breach
    when: payload.minutes_over >= 30
    severity: HIGH
    escalate: true
    reason: "SLA breached by 30 minutes or more"
    recommendation: "Escalate to the service owner and inform the account manager"

  - id: sla_breach.minor
    event_type: sla_breach
    severity: WARNING
    escalate: false
    reason: "SLA breached by less than 30 minutes"
    recommendation: "Review the ticket queue within the business day"

  - id: system_error
    event_type: system_error
    severity: CRITICAL
    escalate: true
    reason: "A system error was reported"
    recommendation: "Page the on-call engineer and check the service's error logs"

  - id: default                               # the catch-all: every event gets a verdict
    severity: LOW
    escalate: false
    reason: "No specific rule for this event type"
    recommendation: "No action needed; keep for the record"

tests:
  - event: {event_type: payment_failed, payload: {amount: 1000}}
    expect: {rule: payment_failed.large, severity: CRITICAL, escalate: true}
  - event: {event_type: payment_failed, payload: {amount: 999.99}}
    expect: {rule: payment_failed.small, severity: HIGH, escalate: false}
  - event: {event_type: payment_failed, payload: {}}
    expect: {rule: payment_failed.small, severity: HIGH, escalate: false}
  - event: {event_type: sla_breach, payload: {minutes_over: 30}}
    expect: {rule: sla_breach.major, severity: HIGH, escalate: true}
  - event: {event_type: sla_breach, payload: {minutes_over: 29.999}}
    expect: {rule: sla_breach.minor, severity: WARNING, escalate: false}
  - event: {event_type: system_error}
    expect: {rule: system_error, severity: CRITICAL, escalate: true}
  - event: {event_type: user_signup, payload: {amount: 1000000}}
    expect: {rule: default, severity: LOW, escalate: false}
$rules$, 'the shipped rules', 'eventflo migration');

INSERT INTO active_rule_version (version, activated_by) VALUES (1, 'eventflo migration');
INSERT INTO rule_activations (version, action, activated_by) VALUES (1, 'install', 'eventflo migration');

-- Results stored before versions existed were judged by the shipped rules: version 1.
-- The default stays for workers of the previous release during a rolling
-- upgrade: they judge with the shipped rules, which are version 1, and know
-- nothing of activations (docs/rules.md: upgrade every worker before the first
-- `eventflo rules apply`). Workers of this release always name the version. No foreign key: it would cost every
-- stored result a lookup, and versions are never deleted.
-- The constant default makes the new column a catalog change, with no rewrite;
-- the CHECK is NOT VALID so that adding it does not scan every stored result
-- under this ALTER's exclusive lock either: existing rows hold the default 1,
-- and new rows are checked.
ALTER TABLE event_processing_results
    ADD COLUMN rules_version integer NOT NULL DEFAULT 1;
ALTER TABLE event_processing_results
    ADD CONSTRAINT event_processing_results_rules_version_positive
        CHECK (rules_version >= 1) NOT VALID;
