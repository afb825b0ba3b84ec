-- depends: 0013.jobs-list-indexes
-- The reverse proxy's set (issue 14; jobgate.proxy.store): upstreams and routes as the
-- normalised documents jobgate.proxy.model returns, and one version the edge agents follow.
--
-- Every change bumps proxy_state.version ONCE per transaction and notifies `jobgate_proxy`
-- with the new version; PostgreSQL delivers the notification at commit, so an agent never
-- reads a set that is not committed. The trigger is per statement and also fires on
-- TRUNCATE (tests empty the tables that way; agents must follow). Writers lock the
-- proxy_state row first (jobgate.proxy.store), so they serialise and each validates the
-- whole set it commits.
CREATE TABLE proxy_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO proxy_state DEFAULT VALUES;

CREATE TABLE proxy_upstreams (
    name text PRIMARY KEY,
    doc jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- nginx compares upstream names case-insensitively ("duplicate upstream").
CREATE UNIQUE INDEX proxy_upstreams_lower_name ON proxy_upstreams (lower(name));

CREATE TABLE proxy_routes (
    id text PRIMARY KEY,
    doc jsonb NOT NULL,
    upstream text NOT NULL REFERENCES proxy_upstreams (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proxy_routes_upstream ON proxy_routes (upstream);

CREATE FUNCTION proxy_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_version bigint;
BEGIN
    -- Once per transaction: a whole-set replace runs several statements.
    IF coalesce(current_setting('jobgate.proxy_bumped', true), '') = 'y' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('jobgate.proxy_bumped', 'y', true);
    UPDATE proxy_state SET version = version + 1, updated_at = now()
    RETURNING version INTO new_version;
    PERFORM pg_notify('jobgate_proxy', new_version::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER proxy_upstreams_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON proxy_upstreams
    FOR EACH STATEMENT EXECUTE FUNCTION proxy_bump_version();
CREATE TRIGGER proxy_routes_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON proxy_routes
    FOR EACH STATEMENT EXECUTE FUNCTION proxy_bump_version();
