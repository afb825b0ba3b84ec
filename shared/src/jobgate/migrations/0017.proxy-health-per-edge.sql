-- depends: 0016.runtime-config
-- Issue 14: active health checks are each edge's own (every edge routes on its own results),
-- so their mirror is one row per edge and server. Before, edges overwrote each other's rows.
-- The rows are rewritten by the running agents within seconds, so the old ones are dropped.
-- GET /api/proxy/stats shows a server unhealthy when any live edge finds it so
-- (jobgate.proxy.stats); a restarted agent starts from its own rows (jobgate_edge.health).
DELETE FROM proxy_server_health;
ALTER TABLE proxy_server_health ADD COLUMN edge_id text NOT NULL;
ALTER TABLE proxy_server_health DROP CONSTRAINT proxy_server_health_pkey;
ALTER TABLE proxy_server_health ADD PRIMARY KEY (edge_id, upstream, address);
