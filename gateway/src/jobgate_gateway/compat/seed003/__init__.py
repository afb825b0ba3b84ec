"""Seed 003 (Container Codes) under /api: files by path (`files`), container jobs (`jobs`),
long-running containers (`containers`), system info and health (`system`), the edge's
reverse proxy (`proxy`).

One module per route group of the seed, each with its own blueprint; errors use the
canonical format (the seed's, with `request_id`) and the seed's specific codes where it
shows them.
"""

from __future__ import annotations

from jobgate_gateway.compat.seed003 import containers, files, jobs, proxy, system

BLUEPRINTS = (files.blp, jobs.blp, containers.blp, system.blp, proxy.blp, proxy.edge_blp)
