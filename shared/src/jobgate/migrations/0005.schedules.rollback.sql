DROP INDEX IF EXISTS jobs_schedule_status;
ALTER TABLE jobs DROP COLUMN IF EXISTS schedule_id;
DROP TABLE IF EXISTS schedules;
