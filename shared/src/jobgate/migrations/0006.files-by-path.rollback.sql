DROP INDEX IF EXISTS files_owner_path;
ALTER TABLE files
    DROP COLUMN IF EXISTS updated_at,
    DROP COLUMN IF EXISTS permissions,
    DROP COLUMN IF EXISTS path;
