-- depends: 0006_create_api_keys
-- How a worker ended, beyond "stopped": a worker that died is "reaped" once
-- its leases are released, either by its supervisor (which saw the process
-- exit) or by the lease rescue (after the worker went silent). Without this a
-- dead worker's row stays "silent" for a day, and operators are warned about
-- workers that need nothing from them.

ALTER TABLE workers
    -- Why the worker was reaped ("killed by SIGKILL", "silent for 35 s"); NULL
    -- while it runs and after a graceful stop. Set together with stopped_at.
    ADD COLUMN reaped_reason text,
    ADD CONSTRAINT workers_reaped_means_ended
        CHECK (reaped_reason IS NULL OR stopped_at IS NOT NULL),
    ADD CONSTRAINT workers_reaped_reason_length
        CHECK (char_length(reaped_reason) BETWEEN 1 AND 255);
