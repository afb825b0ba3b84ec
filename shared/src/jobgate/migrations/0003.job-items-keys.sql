-- depends: 0002.files-and-progress
-- Job items for every kind, not only a cache job's files: an item is named by a `key`
-- (a relative path, a video id, an output file name), its `size` is in bytes, and kind-
-- specific details go to `meta`. Status (pending/done/failed) and error are unchanged.

ALTER TABLE job_items RENAME COLUMN path TO key;
ALTER TABLE job_items ADD COLUMN meta jsonb;

COMMENT ON COLUMN job_items.key IS 'what the item is: a relative path, a video id, an output file name';
COMMENT ON COLUMN job_items.size IS 'bytes (0 when unknown)';
COMMENT ON COLUMN job_items.meta IS 'kind-specific details of the item';
