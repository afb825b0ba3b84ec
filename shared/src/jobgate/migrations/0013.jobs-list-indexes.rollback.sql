-- Back to 0012: the list's indexes of migration 0001.
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner_id, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_kind_created ON jobs (kind, created_at DESC);
DROP INDEX IF EXISTS jobs_kind_created_id;
DROP INDEX IF EXISTS jobs_owner_created_id;
DROP INDEX IF EXISTS jobs_status_created_id;
DROP INDEX IF EXISTS jobs_created_id;
