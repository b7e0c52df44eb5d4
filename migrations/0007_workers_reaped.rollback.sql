ALTER TABLE workers DROP COLUMN reaped_reason;
