-- Back to 0014: the edge agents' tables.
DROP TABLE IF EXISTS proxy_stats_totals;
DROP TABLE IF EXISTS proxy_request_stats;
DROP TABLE IF EXISTS proxy_server_health;
DROP TABLE IF EXISTS proxy_edges;
