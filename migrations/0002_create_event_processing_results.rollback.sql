DROP TABLE event_processing_results;
DROP TYPE severity;
