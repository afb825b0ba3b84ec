-- depends: 0015.proxy-edge
-- Issue 14: the settings a running process may change without a restart (POST
-- /api/config/reload, jobgate.runtime_config). One row at most: the JOBGATE_CONFIG_FILE
-- document last loaded (field names -> values, secrets included: it is what the file says),
-- who loaded it and when. Every process compares `version` with the one it applied at most
-- once a second and rebuilds its settings when it differs. No row: nothing was reloaded.
-- `version` comes from a sequence so it never repeats, even after the row is deleted.
CREATE SEQUENCE runtime_config_version;

CREATE TABLE runtime_config (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL DEFAULT nextval('runtime_config_version'),
    document jsonb NOT NULL DEFAULT '{}',
    loaded_at timestamptz NOT NULL DEFAULT now(),
    loaded_by text
);
