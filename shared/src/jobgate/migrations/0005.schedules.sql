-- depends: 0003.job-items-keys
-- Recurring schedules of any kind (DESIGN.md, "Schedules"): an interval or a cron
-- expression (UTC), and the jobs each run made (jobs.schedule_id). Run counters are not
-- stored: they are counted from those jobs by status, so they follow retries and outcomes.

CREATE TABLE schedules (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id         uuid NOT NULL REFERENCES users (id),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind             text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',
    options          jsonb NOT NULL DEFAULT '{}',
    interval_minutes integer CHECK (interval_minutes >= 5),
    cron             text CHECK (length(cron) BETWEEN 1 AND 200),
    enabled          boolean NOT NULL DEFAULT true,
    next_run_at      timestamptz,
    last_run_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_one_timing CHECK ((interval_minutes IS NULL) <> (cron IS NULL)),
    CONSTRAINT schedules_enabled_has_next CHECK (NOT enabled OR next_run_at IS NOT NULL)
);
COMMENT ON COLUMN schedules.params IS 'the kind''s params, already loaded and dumped by its contract';
COMMENT ON COLUMN schedules.options IS 'priority, max_attempts, backoff, backoff_seconds when set';
COMMENT ON COLUMN schedules.next_run_at IS 'when it is due next (NULL while disabled)';
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;
CREATE INDEX schedules_owner_created ON schedules (owner_id, created_at DESC);

ALTER TABLE jobs ADD COLUMN schedule_id uuid REFERENCES schedules (id) ON DELETE SET NULL;
CREATE INDEX jobs_schedule_status ON jobs (schedule_id, status) WHERE schedule_id IS NOT NULL;
