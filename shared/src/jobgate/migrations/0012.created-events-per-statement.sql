-- depends: 0011.analytics
-- A new job's `created` event is written once per INSERT statement, from its transition
-- table, instead of once per row: a batch submission of 1,000 jobs spent 29 ms of its 46 ms
-- insert in the row trigger's thousand plpgsql calls (issue 13). State changes keep the row
-- trigger (`jobs_status_event`): a worker changes one job at a time.

CREATE FUNCTION jobs_record_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    hooked integer;
BEGIN
    WITH created AS (
        INSERT INTO job_events (job_id, owner_id, kind, event, attempt, data)
        SELECT n.id, n.owner_id, n.kind, 'created', n.attempt,
               jsonb_build_object(
                   'status', n.status,
                   'error', left(n.error, 2000),
                   'job_created_at', n.created_at,
                   'items_done', n.items_done,
                   'items_failed', n.items_failed,
                   'items_total', n.items_total,
                   'bytes_done', n.bytes_done,
                   'bytes_total', n.bytes_total,
                   'progress_pct', n.progress_pct
               ) || CASE WHEN n.kind = 'task'
                         THEN jsonb_build_object('name', n.params ->> 'name')
                         ELSE '{}'::jsonb END
        FROM jobs_created_rows n
        WHERE n.kind <> 'webhook'
        RETURNING id, owner_id
    ), pending AS (
        INSERT INTO webhook_pending (event_id)
        SELECT c.id FROM created c
        WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.owner_id = c.owner_id AND w.active)
        RETURNING 1
    )
    SELECT count(*) INTO hooked FROM pending;
    IF hooked > 0 THEN
        PERFORM pg_notify('jobgate_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER jobs_created_event ON jobs;
CREATE TRIGGER jobs_created_event AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS jobs_created_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_record_created();
