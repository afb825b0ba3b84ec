"""The reverse proxy's set (seed 003's "Reverse Proxy API"), shared by the gateway, which
validates and stores it, and the edge agent, which renders it into nginx's configuration.

- `model`: validation and the normalised form (`validate_set`, `validate_upstream`,
  `validate_route`, `parse_duration`);
- `reserved`: the paths Jobgate serves itself, which no route may take;
- `store`: the tables of migration 0014 (every writer serialises on `proxy_state`; a
  trigger bumps the version and notifies `jobgate_proxy` at commit);
- `render`: the set as nginx text for the edge template's two marker lines;
- `stats`: the edge's request statistics (GET /api/proxy/stats).
"""
