-- depends: 0007.job-details
-- Tasks (seed 004), the workers API and webhooks.

-- Who ran a job last: `worker_id` is cleared when an attempt ends, seed 004 filters tasks by
-- the worker that ran them.
ALTER TABLE jobs ADD COLUMN last_worker_id text;
CREATE INDEX jobs_kind_last_worker ON jobs (kind, last_worker_id, created_at DESC)
    WHERE last_worker_id IS NOT NULL;

-- Every worker's load and capacity, and workers registered from outside Jobgate through
-- `POST /api/v1/workers/heartbeat` (external, owned by the principal that registered them,
-- reporting seed 004's `active`/`inactive`; no host or pid known).
ALTER TABLE workers
    ADD COLUMN current_load integer NOT NULL DEFAULT 0 CHECK (current_load >= 0),
    ADD COLUMN max_capacity integer NOT NULL DEFAULT 1 CHECK (max_capacity >= 0),
    ADD COLUMN external boolean NOT NULL DEFAULT false,
    ADD COLUMN owner_id uuid REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE workers ALTER COLUMN hostname DROP NOT NULL, ALTER COLUMN pid DROP NOT NULL;
ALTER TABLE workers DROP CONSTRAINT workers_status_check;
ALTER TABLE workers ADD CONSTRAINT workers_status_check
    CHECK (status IN ('idle', 'busy', 'stopping', 'stopped', 'active', 'inactive'));
COMMENT ON COLUMN workers.current_load IS 'jobs held now (an external worker reports its own)';
COMMENT ON COLUMN workers.max_capacity IS 'jobs it can hold at once';

-- Every status change of every job, written by the database itself (triggers below), so no
-- writer can forget one: the job's timeline and what webhooks deliver. `event` is the new
-- status, `created` for a new job, `started` for `running`.
CREATE TABLE job_events (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    owner_id   uuid NOT NULL,
    kind       text NOT NULL,
    event      text NOT NULL,
    attempt    integer NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE webhooks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events      text[] NOT NULL,
    description text,
    secret      text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN webhooks.events IS 'event types or patterns: job.completed, task.*, *';
COMMENT ON COLUMN webhooks.secret IS 'whsec_…: Standard Webhooks signing secret (shown once)';
CREATE INDEX webhooks_owner_active ON webhooks (owner_id) WHERE active;

-- Events of owners who have an active webhook, waiting to be turned into deliveries (jobs of
-- the internal `webhook` kind) by a dispatcher; rows are taken with SKIP LOCKED and deleted in
-- the transaction that writes the deliveries, so none is lost or made twice.
CREATE TABLE webhook_pending (
    event_id bigint PRIMARY KEY REFERENCES job_events (id) ON DELETE CASCADE
);

-- A webhook's deliveries, newest first (`GET /api/v1/webhooks/{id}/deliveries`).
CREATE INDEX jobs_webhook_deliveries ON jobs ((params ->> 'webhook_id'), created_at DESC)
    WHERE kind = 'webhook';

CREATE FUNCTION jobs_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER jobs_created_event AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_record_event();
CREATE TRIGGER jobs_status_event AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION jobs_record_event();
