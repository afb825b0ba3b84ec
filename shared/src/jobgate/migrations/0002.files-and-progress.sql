-- depends: 0001.initial-schema
-- Stored files (uploads and job outputs), and a percentage for jobs whose progress is not
-- a count of items (a conversion's progress is media time converted over duration).

CREATE TABLE files (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id     uuid NOT NULL REFERENCES users (id),
    role         text NOT NULL CHECK (role IN ('upload', 'output')),
    job_id       uuid REFERENCES jobs (id) ON DELETE SET NULL,
    filename     text NOT NULL,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    storage_key  text NOT NULL UNIQUE,
    media        jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_owner_created ON files (owner_id, created_at DESC);
CREATE INDEX files_job ON files (job_id) WHERE job_id IS NOT NULL;

ALTER TABLE jobs ADD COLUMN progress_pct double precision;
