-- depends: 0012.created-events-per-statement
-- `GET /api/v1/jobs` with a million jobs (issue 13; docs/architecture.md, "Listing a million
-- jobs"): every filter of the list walks one index in the listing's order, newest first or
-- oldest first (the tiebreaker `id` follows the order), so a page and a keyset cursor's next
-- page read ~limit rows whatever the depth. The INCLUDE columns make the capped count of a
-- `created_since` listing an index-only scan (the other counts come from the analytics
-- rollups). No index on updated_at: progress updates stay HOT.
--
-- Plain CREATE INDEX (a migration runs in a transaction): on an existing big table it holds
-- writes to `jobs` for a few seconds per index (~1-2 s each per million rows here).
CREATE INDEX jobs_created_id ON jobs (created_at, id) INCLUDE (kind);
CREATE INDEX jobs_status_created_id ON jobs (status, created_at, id) INCLUDE (kind);
CREATE INDEX jobs_owner_created_id ON jobs (owner_id, created_at, id) INCLUDE (kind, status);
CREATE INDEX jobs_kind_created_id ON jobs (kind, created_at, id);
-- Replaced by the two above (same leading columns, plus the tiebreaker).
DROP INDEX jobs_owner_created;
DROP INDEX jobs_kind_created;
