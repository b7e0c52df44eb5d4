DROP TRIGGER events_notify_queued ON events;
DROP FUNCTION eventflo_notify_queued();
DROP TABLE events;
DROP TYPE event_status;
DROP FUNCTION eventflo_uuidv7();
