-- depends: 0005.schedules
-- What a kind's worker tells about a running attempt beyond the progress counters, for the
-- API to show while the job runs: a container job's `container_id`, live `resource_usage`
-- and `exit_code` (seed 003's GET /api/jobs/{id}). Written only by the worker holding the
-- job (jobgate.jobs.attempts.set_details), merged key by key; kept after the job ends.
-- (Depends on 0005 only: 0006, written beside it, touches `files`, not `jobs`.)

ALTER TABLE jobs ADD COLUMN details jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN jobs.details IS 'kind-specific facts about the current/last attempt (container_id, resource_usage, exit_code)';
