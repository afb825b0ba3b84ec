"""Seed 003's reverse-proxy API (`/api/proxy`): the upstreams and routes Jobgate's edge
publishes on its public address, and the edge's traffic statistics.

The set lives in PostgreSQL (`jobgate.proxy.store`, which validates every change against
the whole resulting set: a bad set is a 400/409 and is never written); the edge agent
(`jobgate-edge`) renders it into nginx and reloads within seconds, and reports the version
it applied, which `GET /api/proxy/config` shows under `edges`. The set is the whole edge's,
owned by nobody: every route needs an admin or a credential with the `proxy` scope.

`GET /api/proxy/auth-check` is what the edge asks, for each request on a route with the
`auth` middleware (nginx's auth_request): not part of the seed, exempt from rate limits.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from marshmallow import Schema, fields, validate

from jobgate import proxy
from jobgate.errors import Forbidden, InvalidRequest, JobgateError, ServiceUnavailable, Unauthorized
from jobgate.identity import Principal
from jobgate.proxy import policy, store
from jobgate.proxy import stats as proxy_stats
from jobgate.web import Blueprint, ErrorSchema, error_response
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.services import services

SCOPE = "proxy"

blp = Blueprint("seed003_proxy", __name__, url_prefix="/api/proxy", description="seed 003 proxy")
blp.before_request(authenticate_blueprint)

# The edge's auth subrequest: its own blueprint, so the rate limiter can leave it out (a
# 429 here would become nginx's HTML 500: auth_request takes only 2xx, 401 and 403).
edge_blp = Blueprint(
    "seed003_proxy_edge", __name__, url_prefix="/api/proxy", description="the edge's auth check"
)


def require_proxy() -> Principal:
    """An admin, or a credential holding the `proxy` scope."""
    principal = require_auth()
    if not (principal.is_admin or principal.has_scope(SCOPE)):
        raise Forbidden(f"This credential lacks the '{SCOPE}' scope")
    return principal


def _body(*, upstreams: str | None = None) -> dict[str, Any]:
    """The request's JSON object; the store validates its content. `upstreams`: where the
    body holds upstreams ("self" or a key), whose servers must pass the address policy."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    if upstreams is not None:
        given = [body] if upstreams == "self" else body.get(upstreams)
        if isinstance(given, list):
            policy.check_servers(given, services().settings)
    return body


# --- documentation schemas (the store validates; these describe the shapes) ------------------


class HealthCheckSchema(Schema):
    enabled = fields.Boolean(metadata={"description": "default false"})
    path = fields.String(metadata={"description": "default /health"})
    interval = fields.String(metadata={"description": "e.g. 30s (default)"})
    timeout = fields.String(metadata={"description": "e.g. 5s (default), below interval"})
    healthy_threshold = fields.Integer(metadata={"description": "passes to come back (2)"})
    unhealthy_threshold = fields.Integer(metadata={"description": "failures to go down (3)"})


class ServerSchema(Schema):
    address = fields.String(required=True, metadata={"description": "host:port"})
    weight = fields.Integer(metadata={"description": "1..1000, default 1"})
    max_fails = fields.Integer(metadata={"description": "0..100, default 1"})
    fail_timeout = fields.String(metadata={"description": "whole seconds, default 10s"})


class UpstreamSchema(Schema):
    name = fields.String(required=True)
    strategy = fields.String(
        validate=validate.OneOf(proxy.model.STRATEGIES), metadata={"description": "round_robin"}
    )
    health_check = fields.Nested(HealthCheckSchema)
    servers = fields.List(fields.Nested(ServerSchema), required=True)


class RouteSchema(Schema):
    id = fields.String(metadata={"description": "given, or route_<12 hex> when missing"})
    path = fields.String(required=True, metadata={"description": "/exact or /prefix/*"})
    method = fields.String(metadata={"description": "ANY (default) or one method"})
    upstream = fields.String(required=True)
    middleware = fields.List(fields.String(), metadata={"description": "auth, rate_limit"})
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    timeout = fields.String(metadata={"description": "default 60s"})
    retries = fields.Integer(metadata={"description": "0..10, default 1"})


class UpstreamListSchema(Schema):
    upstreams = fields.List(fields.Nested(UpstreamSchema), required=True)
    total = fields.Integer(required=True)


class RouteListSchema(Schema):
    routes = fields.List(fields.Nested(RouteSchema), required=True)
    total = fields.Integer(required=True)


class EdgeSchema(Schema):
    edge_id = fields.String()
    applied_version = fields.Integer(allow_none=True)
    applied_at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    heartbeat_at = fields.String(allow_none=True)


class ProxyConfigSchema(Schema):
    version = fields.Integer(
        metadata={
            "description": "bumped by every change; sent back in a PUT it must still be the"
            " set's (409 when the set changed since: no lost update), left out it is not checked"
        }
    )
    upstreams = fields.List(fields.Nested(UpstreamSchema), required=True)
    routes = fields.List(fields.Nested(RouteSchema), required=True)
    edges = fields.List(
        fields.Nested(EdgeSchema), metadata={"description": "read only: what each edge applied"}
    )


def _doc_body(schema: type[Schema]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# --- the whole set --------------------------------------------------------------------------


def _config(conn: Any, version: int, proxy_set: dict[str, Any]) -> dict[str, Any]:
    return {"version": version, **proxy_set, "edges": proxy_stats.edges(conn)}


@blp.route("/config", methods=["GET"])
@blp.response(200, ProxyConfigSchema)
def get_config() -> dict[str, Any]:
    """The whole set, its version, and the version each edge has applied."""
    require_proxy()
    with services().db.transaction() as conn:
        return _config(conn, *store.load_set(conn))


@blp.route("/config", methods=["PUT"])
@blp.doc(**_doc_body(ProxyConfigSchema))
@blp.response(200, ProxyConfigSchema)
def put_config() -> dict[str, Any]:
    """Replace the whole set at once; validated first (400/409 writes nothing). A body
    with GET's `version` is refused (409) when the set changed since that GET."""
    require_proxy()
    body = _body(upstreams="upstreams")
    with services().db.transaction() as conn:
        return _config(conn, *store.replace_set(conn, body))


# --- upstreams ------------------------------------------------------------------------------


@blp.route("/upstreams", methods=["GET"])
@blp.response(200, UpstreamListSchema)
def list_upstreams() -> dict[str, Any]:
    require_proxy()
    with services().db.transaction() as conn:
        upstreams = store.list_upstreams(conn)
    return {"upstreams": upstreams, "total": len(upstreams)}


@blp.route("/upstreams", methods=["POST"])
@blp.doc(**_doc_body(UpstreamSchema))
@blp.response(201, UpstreamSchema)
def create_upstream() -> tuple[dict[str, Any], int, dict[str, str]]:
    require_proxy()
    body = _body(upstreams="self")
    with services().db.transaction() as conn:
        created = store.create_upstream(conn, body)
    return created, 201, {"Location": f"/api/proxy/upstreams/{created['name']}"}


@blp.route("/upstreams/<string:name>", methods=["GET"])
@blp.response(200, UpstreamSchema)
def get_upstream(name: str) -> dict[str, Any]:
    require_proxy()
    with services().db.transaction() as conn:
        return store.require_upstream(conn, name)


@blp.route("/upstreams/<string:name>", methods=["PUT"])
@blp.doc(**_doc_body(UpstreamSchema))
@blp.response(200, UpstreamSchema)
def replace_upstream(name: str) -> dict[str, Any]:
    require_proxy()
    body = _body(upstreams="self")
    with services().db.transaction() as conn:
        return store.replace_upstream(conn, name, body)


@blp.route("/upstreams/<string:name>", methods=["DELETE"])
@blp.response(204)
def delete_upstream(name: str) -> None:
    require_proxy()
    with services().db.transaction() as conn:
        store.delete_upstream(conn, name)


# --- routes ---------------------------------------------------------------------------------


@blp.route("/routes", methods=["GET"])
@blp.response(200, RouteListSchema)
def list_routes() -> dict[str, Any]:
    require_proxy()
    with services().db.transaction() as conn:
        routes = store.list_routes(conn)
    return {"routes": routes, "total": len(routes)}


@blp.route("/routes", methods=["POST"])
@blp.doc(**_doc_body(RouteSchema))
@blp.response(201, RouteSchema)
def create_route() -> tuple[dict[str, Any], int, dict[str, str]]:
    require_proxy()
    body = _body()
    with services().db.transaction() as conn:
        created = store.create_route(conn, body)
    return created, 201, {"Location": f"/api/proxy/routes/{created['id']}"}


@blp.route("/routes/<string:route_id>", methods=["GET"])
@blp.response(200, RouteSchema)
def get_route(route_id: str) -> dict[str, Any]:
    require_proxy()
    with services().db.transaction() as conn:
        return store.require_route(conn, route_id)


@blp.route("/routes/<string:route_id>", methods=["PUT"])
@blp.doc(**_doc_body(RouteSchema))
@blp.response(200, RouteSchema)
def replace_route(route_id: str) -> dict[str, Any]:
    require_proxy()
    body = _body()
    with services().db.transaction() as conn:
        return store.replace_route(conn, route_id, body)


@blp.route("/routes/<string:route_id>", methods=["DELETE"])
@blp.response(204)
def delete_route(route_id: str) -> None:
    require_proxy()
    with services().db.transaction() as conn:
        store.delete_route(conn, route_id)


# --- statistics -----------------------------------------------------------------------------


class StatsQuery(Schema):
    window = fields.Float(
        load_default=60.0,
        validate=validate.Range(1, 86400),
        metadata={"description": "seconds the rate, percentiles and error rate cover"},
    )


class ResponseTimesSchema(Schema):
    avg = fields.Float()
    p50 = fields.Float()
    p95 = fields.Float()
    p99 = fields.Float()


class ServerStatsSchema(Schema):
    address = fields.String()
    status = fields.String(metadata={"description": "healthy|unhealthy|unknown"})
    requests = fields.Integer()
    response_time = fields.Float(metadata={"description": "mean, ms"})


class UpstreamStatsSchema(Schema):
    total_requests = fields.Integer()
    active_connections = fields.Integer()
    servers = fields.List(fields.Nested(ServerStatsSchema))


class ProxyStatsSchema(Schema):
    requests_total = fields.Integer()
    requests_per_second = fields.Float()
    response_times = fields.Nested(ResponseTimesSchema, metadata={"description": "ms"})
    error_rate = fields.Float()
    upstreams = fields.Dict(keys=fields.String(), values=fields.Nested(UpstreamStatsSchema))


@blp.route("/stats", methods=["GET"])
@blp.arguments(StatsQuery, location="query")
@blp.response(200, ProxyStatsSchema)
def get_stats(query: dict[str, Any]) -> dict[str, Any]:
    """Counted from the edge's own access log, every routed request (not a sample)."""
    require_proxy()
    with services().db.transaction() as conn:
        return proxy_stats.read_stats(conn, window_s=query["window"])


# --- the edge's auth check ------------------------------------------------------------------


@edge_blp.route("/auth-check", methods=["GET"])
@edge_blp.response(204)
@edge_blp.alt_response(401, schema=ErrorSchema, description="no or bad credentials")
@edge_blp.alt_response(403, schema=ErrorSchema, description="auth-service unreachable")
def auth_check() -> Response:
    """204 with the caller's id when the credentials are good, else 401. auth-service
    unreachable is a 403 naming it (the edge turns that into a 503): nginx's auth_request
    takes no other answer."""
    error = g.get("auth_error")
    principal: Principal | None = g.get("principal")
    if isinstance(error, ServiceUnavailable):
        refused = Forbidden("Authentication is unavailable")
        return _error(refused, {"X-Jobgate-Auth-Error": "SERVICE_UNAVAILABLE"})
    if principal is None:
        return _error(error if isinstance(error, Unauthorized) else Unauthorized(), {})
    return Response(
        status=204,
        headers={"X-Jobgate-User-Id": principal.user_id, "X-Jobgate-Username": principal.username},
    )


def _error(error: JobgateError, headers: dict[str, str]) -> Response:
    """The canonical JSON error (nginx reads only the status and headers)."""
    return error_response(
        current_app, error.status, error.code, error.message, error.details, headers
    )
