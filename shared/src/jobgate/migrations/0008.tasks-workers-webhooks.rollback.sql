DROP TRIGGER IF EXISTS jobs_status_event ON jobs;
DROP TRIGGER IF EXISTS jobs_created_event ON jobs;
DROP FUNCTION IF EXISTS jobs_record_event();
DROP INDEX IF EXISTS jobs_webhook_deliveries;
DROP TABLE IF EXISTS webhook_pending;
DROP TABLE IF EXISTS webhooks;
DROP TABLE IF EXISTS job_events;
DELETE FROM workers WHERE external;
ALTER TABLE workers DROP CONSTRAINT workers_status_check;
ALTER TABLE workers ADD CONSTRAINT workers_status_check
    CHECK (status IN ('idle', 'busy', 'stopping', 'stopped'));
ALTER TABLE workers ALTER COLUMN hostname SET NOT NULL, ALTER COLUMN pid SET NOT NULL;
ALTER TABLE workers DROP COLUMN owner_id, DROP COLUMN external, DROP COLUMN max_capacity,
    DROP COLUMN current_load;
DROP INDEX IF EXISTS jobs_kind_last_worker;
ALTER TABLE jobs DROP COLUMN IF EXISTS last_worker_id;
