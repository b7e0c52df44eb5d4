DROP TABLE event_attempts;
DROP TYPE attempt_outcome;
