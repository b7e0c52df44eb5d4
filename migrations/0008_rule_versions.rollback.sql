ALTER TABLE event_processing_results DROP COLUMN rules_version;
DROP TABLE rule_activations;
DROP TABLE active_rule_version;
DROP TABLE rule_versions;
DROP FUNCTION eventflo_rule_versions_immutable();
