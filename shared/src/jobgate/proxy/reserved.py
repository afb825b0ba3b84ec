"""Paths Jobgate serves itself, which a published route may never take over.

The edge sends every path no route claims to the gateway (`location /`), so a route on a
path the gateway, stats-service or the edge itself answers would silently hide an API.
nginx matches plain string prefixes (`location ^~ "/x/"`) and exact strings
(`location = "/x"`), so the check compares strings the same way:

- an exact path E conflicts if it is reserved-exact, starts with a reserved prefix, or is
  a reserved prefix without its final slash (`/api`, which the gateway redirects or 404s);
- a prefix P (a route path `P*`) conflicts if it starts with a reserved prefix, or if a
  reserved prefix or exact path starts with P (`/*` and `/h*` would swallow `/health`).

The lists are checked against the gateway's url_map, stats-service's routes and the edge
template's locations by tests/unit/test_proxy_model.py: a new route there fails that test
until it is covered here.
"""

from __future__ import annotations

# Paths answered as themselves (nothing below them is Jobgate's).
RESERVED_EXACT: tuple[str, ...] = (
    "/upload",
    "/health",
    "/ready",
    "/info",
    "/metrics",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/dashboard",
)

# Whole trees. `/api/` covers the seeds' APIs, /api/v1, the WebSockets under /api/ws/ and
# the proxy's own /api/proxy and /api/config, and any route a later seed adds there.
RESERVED_PREFIXES: tuple[str, ...] = (
    "/api/",
    "/ws/",
    "/docs/",
    "/dashboard/",
    "/static/",
    "/download/",
    "/status/",
    "/health/",
    "/workers/",
    "/stats/",
    "/_edge/",  # the edge's own error pages and /_edge/health
    "/_jobgate/",  # the proxy's internal locations (auth subrequest, dispatch, errors)
)


def reserved_conflict(path: str) -> str | None:
    """The reserved exact path or prefix `path` (a route path: `/x` exact, `/x*` prefix)
    collides with, or None when the route may have it."""
    if path.endswith("*"):
        return _prefix_conflict(path[:-1])
    return _exact_conflict(path)


def _exact_conflict(path: str) -> str | None:
    if path in RESERVED_EXACT:
        return path
    for prefix in RESERVED_PREFIXES:
        if path.startswith(prefix) or path + "/" == prefix:
            return prefix
    return None


def _prefix_conflict(prefix: str) -> str | None:
    for reserved in RESERVED_PREFIXES:
        if prefix.startswith(reserved) or reserved.startswith(prefix):
            return reserved
    for exact in RESERVED_EXACT:
        if exact.startswith(prefix):
            return exact
    return None
