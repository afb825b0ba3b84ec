-- Back to 0015: the reloadable settings' row.
DROP TABLE IF EXISTS runtime_config;
DROP SEQUENCE IF EXISTS runtime_config_version;
