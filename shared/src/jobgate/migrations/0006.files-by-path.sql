-- depends: 0005.schedules
-- Files by path (seed 003's /api/files): a per-owner namespace over the same `files` rows.
-- `path` is normalized by `jobgate.files.normalize_path` ("/uploads/document.pdf"), unique
-- per owner while set; a replaced file whose row a job still refers to keeps its row with
-- `path` cleared. `permissions` ("644") is metadata only: nothing enforces it. `updated_at`
-- is when the content at the path last changed (the seed's `modified_at`).

ALTER TABLE files
    ADD COLUMN path text
        CONSTRAINT files_path_normalized
        CHECK (path IS NULL OR (left(path, 1) = '/' AND octet_length(path) BETWEEN 2 AND 1024)),
    ADD COLUMN permissions text
        CONSTRAINT files_permissions_octal CHECK (permissions ~ '^[0-7]{3,4}$'),
    ADD COLUMN updated_at timestamptz;

UPDATE files SET updated_at = created_at;
ALTER TABLE files
    ALTER COLUMN updated_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL;

CREATE UNIQUE INDEX files_owner_path ON files (owner_id, path) WHERE path IS NOT NULL;

COMMENT ON COLUMN files.path IS 'the file''s path in its owner''s namespace (seed 003), NULL for files addressed by id only';
COMMENT ON COLUMN files.permissions IS 'octal mode as the client sent it ("644"); metadata only';
COMMENT ON COLUMN files.updated_at IS 'when the content last changed (seed 003''s modified_at)';
