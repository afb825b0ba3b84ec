-- depends: 0008.tasks-workers-webhooks
-- Job events outlive their job, deliveries make none, and old events can be swept.

-- A job deleted right after a change (or deleted while pending, which writes its `cancelled`
-- event) must not take its queued event with it: events no longer cascade from `jobs`. The
-- column and its index stay; a user's deletion still removes their events. Each event
-- carries what its webhook payload needs, so it can be delivered without the job.
ALTER TABLE job_events DROP CONSTRAINT job_events_job_id_fkey;
ALTER TABLE job_events ADD CONSTRAINT job_events_owner_id_fkey
    FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE CASCADE;
-- The retention sweep takes the oldest rows first (`jobgate.jobs.events.sweep`).
CREATE INDEX job_events_created ON job_events (created_at);
COMMENT ON COLUMN job_events.data IS
    'status, error, job_created_at, and name for a task: the job as the event left it';

-- Deliveries (kind `webhook`) write no events: their state is in `jobs`, and every attempt
-- writing rows about itself made the table grow with deliveries.
CREATE OR REPLACE FUNCTION jobs_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_event_id bigint;
BEGIN
    IF NEW.kind = 'webhook' THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_events (job_id, owner_id, kind, event, attempt, data)
    VALUES (
        NEW.id, NEW.owner_id, NEW.kind,
        CASE WHEN TG_OP = 'INSERT' THEN 'created'
             WHEN NEW.status = 'running' THEN 'started'
             ELSE NEW.status END,
        NEW.attempt,
        jsonb_build_object(
            'status', NEW.status,
            'error', left(NEW.error, 2000),
            'job_created_at', NEW.created_at
        ) || CASE WHEN NEW.kind = 'task'
                  THEN jsonb_build_object('name', NEW.params ->> 'name')
                  ELSE '{}'::jsonb END
    )
    RETURNING id INTO new_event_id;
    IF EXISTS (SELECT 1 FROM webhooks WHERE owner_id = NEW.owner_id AND active) THEN
        INSERT INTO webhook_pending (event_id) VALUES (new_event_id);
        PERFORM pg_notify('jobgate_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;
