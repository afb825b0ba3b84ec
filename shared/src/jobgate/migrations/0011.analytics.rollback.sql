-- Back to 0010: no analytics rollups (the numbers are computed from `jobs` again on demand).
DROP TRIGGER IF EXISTS analytics_jobs_truncate ON jobs;
DROP TRIGGER IF EXISTS analytics_jobs_update ON jobs;
DROP TRIGGER IF EXISTS analytics_jobs_delete ON jobs;
DROP TRIGGER IF EXISTS analytics_jobs_insert ON jobs;
DROP FUNCTION IF EXISTS analytics_jobs_truncate();
DROP FUNCTION IF EXISTS analytics_jobs_change();
DROP FUNCTION IF EXISTS analytics_jobs_rows();
DROP FUNCTION IF EXISTS analytics_duration_us(text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS analytics_day(text, timestamptz);
DROP TABLE IF EXISTS analytics_daily_all;
DROP TABLE IF EXISTS analytics_daily;
DROP TABLE IF EXISTS analytics_totals;
DROP TABLE IF EXISTS analytics_deltas;
