-- depends: 0014.proxy-set
-- Issue 14: what the edge agents (edge-agent, `jobgate-edge`) report back about the proxy set
-- of migration 0014. Written by the agents only; the gateway reads them (GET /api/proxy/config,
-- GET /api/proxy/stats through jobgate.proxy.stats).

-- One row per edge (EDGE_ID): the set version and nginx generation it runs, the last apply
-- error (NULL once a later apply succeeds), a heartbeat, and how far it has read its access
-- log: (log_inode, log_offset) is stored in the transaction that adds the lines' counts to the
-- stats tables, so every line is counted exactly once across restarts.
CREATE TABLE proxy_edges (
    edge_id text PRIMARY KEY,
    applied_version bigint,
    applied_generation text,
    applied_at timestamptz,
    error text,
    heartbeat_at timestamptz,
    log_inode bigint,
    log_offset bigint
);

-- Active health checks: one row per checked server (upstream, address); `passes`/`failures`
-- are the current run of consecutive results. Rows of servers no longer checked are deleted.
CREATE TABLE proxy_server_health (
    upstream text NOT NULL,
    address text NOT NULL,
    status text NOT NULL CHECK (status IN ('healthy', 'unhealthy')),
    passes integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,
    checked_at timestamptz,
    changed_at timestamptz,
    last_error text,
    PRIMARY KEY (upstream, address)
);

-- 10-second buckets. address = '' rows count client requests (errors: final status >= 500,
-- time: $request_time, hist: jobgate.proxy.stats' latency histogram); rows with a server
-- address count attempts at that server (retries included; time: $upstream_response_time,
-- no histogram). Old buckets are deleted by the agents (PROXY_STATS_RETENTION_HOURS).
CREATE TABLE proxy_request_stats (
    bucket timestamptz NOT NULL,
    route_id text NOT NULL,
    upstream text NOT NULL,
    address text NOT NULL DEFAULT '',
    requests bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    time_sum_ms double precision NOT NULL DEFAULT 0,
    hist integer[],
    PRIMARY KEY (bucket, route_id, upstream, address)
);

-- Since stats began (never swept): the same split by address as above.
CREATE TABLE proxy_stats_totals (
    upstream text NOT NULL,
    address text NOT NULL DEFAULT '',
    requests bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    time_sum_ms double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (upstream, address)
);
