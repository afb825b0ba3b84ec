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


def _dependencies() -> dict[str, str]:
    svc = services()
    return {
        "database": "connected" if svc.db.ping() else "disconnected",
        "broker": "connected" if svc.publisher.ping() else "disconnected",
    }


@blp.route("/health")
def health() -> Response:
    """Overall health: 200 when the database and the broker answer, else 503."""
    deps = _dependencies()
    healthy = all(v == "connected" for v in deps.values())
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "service": "jobgate-gateway",
        "version": VERSION,
        "services": {"database": deps["database"], "rabbitmq": deps["broker"]},
        "timestamp": iso_ms(dt.datetime.now(dt.UTC)),
    }
    return jsonify(body), 200 if healthy else 503


@blp.route("/api/v1/health")
def api_health() -> Response:
    """Seed 000's health check, plus the broker's state."""
    deps = _dependencies()
    healthy = all(v == "connected" for v in deps.values())
    body = {
        "success": healthy,
        "status": "healthy" if healthy else "unhealthy",
        "service": "api-gateway",
        "database": deps["database"],
        "broker": deps["broker"],
        "timestamp": iso_ms(dt.datetime.now(dt.UTC)),
    }
    return jsonify(body), 200 if healthy else 503


@blp.route("/ready")
def ready() -> Response:
    """Readiness for load balancers and Kubernetes: dependencies reachable."""
    deps = _dependencies()
    ok = all(v == "connected" for v in deps.values())
    return jsonify({"ready": ok, **deps}), 200 if ok else 503


@blp.route("/info")
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
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
