DROP TABLE delivery_attempts;
DROP TABLE deliveries;
DROP TYPE delivery_status;
DROP TABLE endpoints;
DROP FUNCTION eventflo_endpoints_changed();
DROP TABLE endpoint_generation;
DROP TYPE endpoint_format;
