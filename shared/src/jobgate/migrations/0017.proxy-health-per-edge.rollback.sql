-- Back to 0016: one health row per server, whichever edge wrote it last.
DELETE FROM proxy_server_health;
ALTER TABLE proxy_server_health DROP CONSTRAINT proxy_server_health_pkey;
ALTER TABLE proxy_server_health DROP COLUMN edge_id;
ALTER TABLE proxy_server_health ADD PRIMARY KEY (upstream, address);
