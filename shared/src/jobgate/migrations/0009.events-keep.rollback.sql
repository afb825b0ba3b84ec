-- Back to 0008: events cascade from their job again (events of deleted jobs are dropped),
-- and deliveries record their changes again.
CREATE OR REPLACE FUNCTION jobs_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_event_id bigint;
BEGIN
    INSERT INTO job_events (job_id, owner_id, kind, event, attempt, data)
    VALUES (
        NEW.id, NEW.owner_id, NEW.kind,
        CASE WHEN TG_OP = 'INSERT' THEN 'created'
             WHEN NEW.status = 'running' THEN 'started'
             ELSE NEW.status END,
        NEW.attempt,
        jsonb_build_object('status', NEW.status, 'error', left(NEW.error, 2000))
    )
    RETURNING id INTO new_event_id;
    -- Deliveries are jobs too: their own changes never make more deliveries.
    IF NEW.kind <> 'webhook'
       AND EXISTS (SELECT 1 FROM webhooks WHERE owner_id = NEW.owner_id AND active) THEN
        INSERT INTO webhook_pending (event_id) VALUES (new_event_id);
        PERFORM pg_notify('jobgate_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON COLUMN job_events.data IS NULL;
DROP INDEX IF EXISTS job_events_created;
ALTER TABLE job_events DROP CONSTRAINT IF EXISTS job_events_owner_id_fkey;
DELETE FROM job_events e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id);
ALTER TABLE job_events ADD CONSTRAINT job_events_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;
