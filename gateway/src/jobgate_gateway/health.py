"""Liveness, readiness, info and Prometheus metrics at the root (seed 000's health check is in
`compat.seed000`).

Seeds 001 and 004 both claim `/health`, and seed 004 also `/ready` and `/info`: each answers
the union of their fields (DESIGN.md, "Public API"). Both seeds say `healthy`; `/ready` says
`ready` (or `not_ready` with its 503) beside the older `ready: true|false`.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import requests
from flask import Response, current_app, g
from marshmallow import Schema, fields, validate

from jobgate import db, files, kinds, workers
from jobgate.sizes import readable_size
from jobgate.web import Blueprint
from jobgate_gateway import metrics
from jobgate_gateway.services import Services, services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint("health", __name__, description="Health, readiness, info and metrics")
VERSION = "0.1.0"
PRODUCT = "Jobgate"
PUBLIC = blp.doc(security=[])  # no credentials needed (OpenAPI)
STATES = validate.OneOf(["connected", "disconnected", "unknown"])


class HealthSchema(Schema):
    status = fields.String(
        required=True, validate=validate.OneOf(["healthy", "degraded", "unhealthy"])
    )
    service = fields.String(required=True)
    version = fields.String(required=True)
    services = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=STATES),
        required=True,
        metadata={"description": "auth, converter, rabbitmq, database (seed 001)"},
    )
    timestamp = fields.String(required=True)


class ServiceStateSchema(Schema):
    status = fields.String(required=True, validate=STATES)
    latency_ms = fields.Float()
    count = fields.Integer()
    busy = fields.Integer()


class ServicesReportSchema(Schema):
    services = fields.Dict(
        keys=fields.String(), values=fields.Nested(ServiceStateSchema), required=True
    )
    timestamp = fields.String(required=True)


class UploadTotalsSchema(Schema):
    count = fields.Integer(required=True)
    bytes = fields.Integer(required=True)
    bytes_readable = fields.String(required=True)
    by_status = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "conversions by job status"},
    )


class UploadStatsSchema(Schema):
    uploads = fields.Nested(UploadTotalsSchema, required=True)
    scope = fields.String(required=True, validate=validate.OneOf(["own", "all"]))


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    ready = fields.Boolean(required=True)
    database = fields.String(required=True, validate=STATES)
    broker = fields.String(required=True, validate=STATES)
    version = fields.String(required=True)
    timestamp = fields.String(required=True)


class KindInfoSchema(Schema):
    name = fields.String(required=True)
    description = fields.String(required=True)
    queue = fields.String(required=True)
    seed = fields.String(required=True, allow_none=True)


class InfoSchema(Schema):
    name = fields.String(required=True, metadata={"description": "the product (seed 004)"})
    service = fields.String(required=True)
    version = fields.String(required=True)
    environment = fields.String(required=True, metadata={"description": "JOBGATE_ENV"})
    debug = fields.Boolean(required=True)
    job_kinds = fields.List(fields.String(), required=True)
    supported_kinds = fields.List(fields.String(), required=True)
    kinds = fields.List(fields.Nested(KindInfoSchema), required=True)
    openapi = fields.String(required=True)
    docs = fields.String(required=True)


def dependencies() -> tuple[dict[str, str], bool, str]:
    """Each dependency's state, whether all are up, and the time of the check."""
    svc = services()
    deps = {
        "database": "connected" if svc.db.ping() else "disconnected",
        "broker": "connected" if svc.publisher.ping() else "disconnected",
    }
    up = all(v == "connected" for v in deps.values())
    return deps, up, iso_ms(dt.datetime.now(dt.UTC))


@blp.route("/health")
@PUBLIC
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="database or broker down")
def health() -> tuple[dict[str, Any], int]:
    """Overall health (seed 001's shape): 503 when the database or the broker is down;
    `degraded` (200) when auth-service or every convert worker is."""
    deps, healthy, now = dependencies()
    svc = services()
    extra = {"auth": _auth_state(svc), "converter": _worker_state(svc, "convert")}
    degraded = healthy and any(v != "connected" for v in extra.values())
    body = {
        "status": "degraded" if degraded else "healthy" if healthy else "unhealthy",
        "service": "jobgate-gateway",
        "version": VERSION,
        "services": {**extra, "rabbitmq": deps["broker"], "database": deps["database"]},
        "timestamp": now,
    }
    return body, 200 if healthy else 503


@blp.route("/health/services")
@PUBLIC
@blp.response(200, ServicesReportSchema)
def health_services() -> dict[str, Any]:
    """Each dependency in detail: state, answer time, and live workers per kind."""
    svc = services()
    checks = {
        "database": lambda: svc.db.ping(),
        "rabbitmq": lambda: svc.publisher.ping(),
        "auth": lambda: _auth_state(svc) == "connected",
    }
    report: dict[str, Any] = {}
    for name, check in checks.items():
        started = time.perf_counter()
        ok = check()
        report[name] = {
            "status": "connected" if ok else "disconnected",
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    try:
        with svc.db.transaction() as conn:
            live = workers.live_workers(conn)
    except db.OperationalError:
        live = []
    for kind in kinds.names():
        mine = [w for w in live if w["kind"] == kind]
        report[f"{kind}_workers"] = {
            "status": "connected" if mine else "disconnected",
            "count": len(mine),
            "busy": sum(1 for w in mine if w["status"] == "busy"),
        }
    report["converter"] = report["convert_workers"]
    return {"services": report, "timestamp": iso_ms(dt.datetime.now(dt.UTC))}


def _auth_state(svc: Services) -> str:
    try:
        answer = svc.authenticator.session.get(f"{svc.settings.auth_service_url}/health", timeout=2)
        return "connected" if answer.status_code == 200 else "disconnected"
    except requests.RequestException:
        return "disconnected"


def _worker_state(svc: Services, kind: str) -> str:
    """A kind's workers are `connected` when one heart-beat within the last 30 s."""
    try:
        with svc.db.transaction() as conn:
            return "connected" if workers.live_workers(conn, kind=kind) else "disconnected"
    except db.OperationalError:
        return "unknown"


@blp.route("/stats/uploads")
@PUBLIC
@blp.response(200, UploadStatsSchema)
def upload_stats() -> dict[str, Any]:
    """Uploads (count, bytes) and conversions by status: the caller's own when
    authenticated as a user, everyone's for an admin or an anonymous call (totals only)."""
    principal = g.get("principal")
    owner = principal.user_id if principal is not None and not principal.is_admin else None
    svc = services()
    with svc.db.transaction() as conn:
        stats = files.upload_stats(conn, owner_id=owner)
    stats["bytes_readable"] = readable_size(stats["bytes"])
    return {"uploads": stats, "scope": "own" if owner else "all"}


@blp.route("/ready")
@PUBLIC
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=ReadySchema, description="a dependency is unreachable")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness for load balancers and Kubernetes: dependencies reachable."""
    deps, ok, now = dependencies()
    body = {"status": "ready" if ok else "not_ready", "ready": ok, **deps}
    return {**body, "version": VERSION, "timestamp": now}, 200 if ok else 503


@blp.route("/info")
@PUBLIC
@blp.response(200, InfoSchema)
def info() -> dict[str, Any]:
    """The gateway's version, environment and the job kinds it serves (from the kind
    registry)."""
    return {
        "name": PRODUCT,
        "service": "jobgate-gateway",
        "version": VERSION,
        "environment": services().settings.env,
        "debug": current_app.debug,
        "job_kinds": list(kinds.names()),
        # What POST /api/v1/jobs takes: internal kinds (webhook deliveries) are the platform's.
        "supported_kinds": [spec.name for spec in kinds.specs() if not spec.internal],
        "kinds": [
            {
                "name": spec.name,
                "description": spec.description,
                "queue": spec.queue_name,
                "seed": spec.seed,
            }
            for spec in kinds.specs()
        ],
        "openapi": "/openapi.json",
        "docs": "/docs",
    }


@blp.route("/metrics")
@PUBLIC
@blp.doc(
    responses={
        "200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
)
def prometheus_metrics() -> Response:
    body, content_type = metrics.render(services().db)
    return Response(body, content_type=content_type)
