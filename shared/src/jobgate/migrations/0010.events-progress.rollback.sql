-- Back to 0009: no progress events, and state changes without the job's counters.
DELETE FROM job_events WHERE event = 'progress';
ALTER TABLE jobs DROP COLUMN progress_events;

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
