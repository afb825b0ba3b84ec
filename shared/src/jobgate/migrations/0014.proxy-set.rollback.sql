-- Back to 0013: no proxy set.
DROP TABLE IF EXISTS proxy_routes;
DROP TABLE IF EXISTS proxy_upstreams;
DROP TABLE IF EXISTS proxy_state;
DROP FUNCTION IF EXISTS proxy_bump_version();
