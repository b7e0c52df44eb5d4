DROP TABLE api_keys;
DROP TYPE api_key_scope;
