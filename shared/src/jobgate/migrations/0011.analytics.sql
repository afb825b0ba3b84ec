-- depends: 0010.events-progress
-- Analytics (seed 004's dashboard and trends) without counting a million jobs per request and
-- without a shared counter row that every status change would have to lock.
--
-- Triggers on `jobs` append signed deltas to `analytics_deltas` in the writer's own
-- transaction (an insert never waits for another writer: no row is updated). Housekeeping
-- folds them into three small rollup tables (`jobgate.analytics.compact`, rows taken with
-- SKIP LOCKED in short transactions). A read sums rollup + unfolded deltas in ONE statement,
-- so it sees one snapshot and is exact at any moment after commit (docs/architecture.md,
-- "Analytics").

-- Written only by the triggers below, deleted only by compaction. No index: it is
-- appended to at every status change (a serial key would add an index insert there), read
-- whole, and kept small by compaction. `day` is the UTC day of completed_at for a finished
-- job (completed, failed, cancelled), NULL otherwise; the duration is that of a completed job
-- with both timestamps, in microseconds (exact integer sums).
CREATE TABLE analytics_deltas (
    owner_id    uuid NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    day         date,
    jobs        integer NOT NULL,
    duration_n  integer NOT NULL,
    duration_us bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);
COMMENT ON TABLE analytics_deltas IS
    'jobs rollup changes not yet folded: +1/-1 per (owner, kind, status, day) (jobgate.analytics)';

-- Jobs that exist now, by current status: the dashboard.
CREATE TABLE analytics_totals (
    owner_id    uuid NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    jobs        bigint NOT NULL,
    duration_n  bigint NOT NULL,
    duration_us bigint NOT NULL,
    PRIMARY KEY (owner_id, kind, status)
);

-- Finished jobs by UTC day of completed_at: one user's trends.
CREATE TABLE analytics_daily (
    owner_id    uuid NOT NULL,
    kind        text NOT NULL,
    day         date NOT NULL,
    completed   bigint NOT NULL,
    failed      bigint NOT NULL,
    cancelled   bigint NOT NULL,
    duration_n  bigint NOT NULL,
    duration_us bigint NOT NULL,
    PRIMARY KEY (owner_id, kind, day)
);

-- The same for all owners together: an admin's trends read one row per kind and day.
CREATE TABLE analytics_daily_all (
    day         date NOT NULL,
    kind        text NOT NULL,
    completed   bigint NOT NULL,
    failed      bigint NOT NULL,
    cancelled   bigint NOT NULL,
    duration_n  bigint NOT NULL,
    duration_us bigint NOT NULL,
    PRIMARY KEY (day, kind)
);

-- Rows left empty once their jobs are gone, for compaction to remove: normally none.
CREATE INDEX analytics_totals_empty ON analytics_totals (owner_id) WHERE jobs = 0;
CREATE INDEX analytics_daily_empty ON analytics_daily (owner_id)
    WHERE completed = 0 AND failed = 0 AND cancelled = 0;
CREATE INDEX analytics_daily_all_empty ON analytics_daily_all (day)
    WHERE completed = 0 AND failed = 0 AND cancelled = 0;

-- One row's contribution: its day when finished, its duration when completed.
CREATE FUNCTION analytics_day(status text, completed_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status IN ('completed', 'failed', 'cancelled')
                THEN (completed_at AT TIME ZONE 'UTC')::date END
$$;
CREATE FUNCTION analytics_duration_us(status text, started_at timestamptz,
                                      completed_at timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status = 'completed'
                THEN (extract(epoch FROM completed_at - started_at) * 1000000)::bigint END
$$;

-- Inserts and deletes are statement triggers over their transition tables: one delta per
-- (owner, kind, status, day) of the statement, so a bulk COPY or a user's mass deletion
-- writes a few rows, not one per job.
CREATE FUNCTION analytics_jobs_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO analytics_deltas
        SELECT owner_id, kind, status, analytics_day(status, completed_at), count(*),
               count(analytics_duration_us(status, started_at, completed_at)),
               coalesce(sum(analytics_duration_us(status, started_at, completed_at)), 0)
        FROM analytics_new_rows GROUP BY 1, 2, 3, 4;
    ELSE
        INSERT INTO analytics_deltas
        SELECT owner_id, kind, status, analytics_day(status, completed_at), -count(*),
               -count(analytics_duration_us(status, started_at, completed_at)),
               -coalesce(sum(analytics_duration_us(status, started_at, completed_at)), 0)
        FROM analytics_old_rows GROUP BY 1, 2, 3, 4;
    END IF;
    RETURN NULL;
END
$$;

-- A change is a row trigger whose WHEN (evaluated without calling PL/pgSQL) lets only the
-- changes that move a job between keys through: progress ticks and lease renewals cost
-- nothing. Two rows: the old key -1, the new key +1.
CREATE FUNCTION analytics_jobs_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_us bigint := analytics_duration_us(OLD.status, OLD.started_at, OLD.completed_at);
    new_us bigint := analytics_duration_us(NEW.status, NEW.started_at, NEW.completed_at);
BEGIN
    INSERT INTO analytics_deltas VALUES
        (OLD.owner_id, OLD.kind, OLD.status, analytics_day(OLD.status, OLD.completed_at), -1,
         -(old_us IS NOT NULL)::integer, -coalesce(old_us, 0)),
        (NEW.owner_id, NEW.kind, NEW.status, analytics_day(NEW.status, NEW.completed_at), 1,
         (new_us IS NOT NULL)::integer, coalesce(new_us, 0));
    RETURN NULL;
END
$$;

-- TRUNCATE fires no row triggers: empty the rollups with the jobs.
CREATE FUNCTION analytics_jobs_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE analytics_deltas, analytics_totals, analytics_daily, analytics_daily_all;
    RETURN NULL;
END
$$;

-- No job may change between the backfill's read and the triggers' first row.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER analytics_jobs_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS analytics_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_jobs_rows();
CREATE TRIGGER analytics_jobs_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS analytics_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_jobs_rows();
CREATE TRIGGER analytics_jobs_update
    AFTER UPDATE OF status, owner_id, kind, started_at, completed_at ON jobs
    FOR EACH ROW WHEN (
        OLD.status IS DISTINCT FROM NEW.status
        OR OLD.owner_id IS DISTINCT FROM NEW.owner_id
        OR OLD.kind IS DISTINCT FROM NEW.kind
        OR (NEW.status IN ('completed', 'failed', 'cancelled')
            AND (OLD.completed_at IS DISTINCT FROM NEW.completed_at
                 OR OLD.started_at IS DISTINCT FROM NEW.started_at)))
    EXECUTE FUNCTION analytics_jobs_change();
CREATE TRIGGER analytics_jobs_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_jobs_truncate();

-- Backfill from the jobs as they are.
INSERT INTO analytics_totals
SELECT owner_id, kind, status, count(*),
       count(analytics_duration_us(status, started_at, completed_at)),
       coalesce(sum(analytics_duration_us(status, started_at, completed_at)), 0)
FROM jobs GROUP BY 1, 2, 3;

INSERT INTO analytics_daily
SELECT owner_id, kind, analytics_day(status, completed_at),
       count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'cancelled'),
       count(analytics_duration_us(status, started_at, completed_at)),
       coalesce(sum(analytics_duration_us(status, started_at, completed_at)), 0)
FROM jobs WHERE analytics_day(status, completed_at) IS NOT NULL GROUP BY 1, 2, 3;

INSERT INTO analytics_daily_all
SELECT day, kind, sum(completed), sum(failed), sum(cancelled), sum(duration_n), sum(duration_us)
FROM analytics_daily GROUP BY 1, 2;
