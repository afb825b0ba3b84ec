"""Liveness, readiness, info and Prometheus metrics at the root; seed 000's health under /api/v1."""

from __future__ import annotations

import datetime as dt

from flask import Response, jsonify

from jobgate.broker import KINDS
from jobgate.web import Blueprint
from jobgate_gateway import metrics
from jobgate_gateway.jobs.resources import SUBMITTERS
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint("health", __name__, description="Health, readiness, info and metrics")
VERSION = "0.1.0"
PUBLIC = blp.doc(security=[])  # no credentials needed (OpenAPI)


def _dependencies() -> tuple[dict[str, str], bool, str]:
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
def health() -> Response:
    """Overall health: 200 when the database and the broker answer, else 503."""
    deps, healthy, now = _dependencies()
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "service": "jobgate-gateway",
        "version": VERSION,
        "services": {"database": deps["database"], "rabbitmq": deps["broker"]},
        "timestamp": now,
    }
    return jsonify(body), 200 if healthy else 503


@blp.route("/api/v1/health")
@PUBLIC
def api_health() -> Response:
    """Seed 000's health check, plus the broker's state."""
    deps, healthy, now = _dependencies()
    body = {
        "success": healthy,
        "status": "healthy" if healthy else "unhealthy",
        "service": "api-gateway",
        **deps,
        "timestamp": now,
    }
    return jsonify(body), 200 if healthy else 503


@blp.route("/ready")
@PUBLIC
def ready() -> Response:
    """Readiness for load balancers and Kubernetes: dependencies reachable."""
    deps, ok, _ = _dependencies()
    return jsonify({"ready": ok, **deps}), 200 if ok else 503


@blp.route("/info")
@PUBLIC
def info() -> Response:
    return jsonify(
        {
            "service": "jobgate-gateway",
            "version": VERSION,
            "job_kinds": list(KINDS),
            "supported_kinds": sorted(SUBMITTERS),
            "openapi": "/openapi.json",
            "docs": "/docs",
        }
    )


@blp.route("/metrics")
@PUBLIC
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
