-- depends: 0009.events-keep
-- Progress ticks become job events too, so a live stream can be resumed from PostgreSQL
-- (`Last-Event-ID`) and a job's timeline shows how it moved, not only its state changes.

-- How many progress events a job has written (all attempts): the writer prunes the oldest
-- once there are more than JOB_EVENTS_PROGRESS_KEEP, so a long job cannot fill the table.
ALTER TABLE jobs ADD COLUMN progress_events integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN jobs.progress_events IS
    'progress events written for this job (jobgate.jobs.attempts.update_progress)';
COMMENT ON COLUMN job_events.event IS
    'created, started, retrying, completed, failed, cancelled, pending (reopened), progress';

-- A state change's event also carries the job's counters as they were, so a stream can say
-- "completed, 100 %" or "failed at 40 %" from the event alone.
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
            'job_created_at', NEW.created_at,
            'items_done', NEW.items_done,
            'items_failed', NEW.items_failed,
            'items_total', NEW.items_total,
            'bytes_done', NEW.bytes_done,
            'bytes_total', NEW.bytes_total,
            'progress_pct', NEW.progress_pct
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
