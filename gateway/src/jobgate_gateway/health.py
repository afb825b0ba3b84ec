"""Liveness, readiness, info and Prometheus metrics at the root; seed 000's health under /api/v1."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import requests
from flask import Response, g, jsonify

from jobgate import db, files, workers
from jobgate.broker import KINDS
from jobgate.sizes import readable_size
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
    """Overall health (seed 001's shape): 503 when the database or the broker is down;
    `degraded` (200) when auth-service or every convert worker is."""
    deps, healthy, now = _dependencies()
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
    return jsonify(body), 200 if healthy else 503


@blp.route("/health/services")
@PUBLIC
def health_services() -> Response:
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
    for kind in ("cache", "convert"):
        mine = [w for w in live if w["kind"] == kind]
        report[f"{kind}_workers"] = {
            "status": "connected" if mine else "disconnected",
            "count": len(mine),
            "busy": sum(1 for w in mine if w["status"] == "busy"),
        }
    report["converter"] = report["convert_workers"]
    return jsonify({"services": report, "timestamp": iso_ms(dt.datetime.now(dt.UTC))})


def _auth_state(svc) -> str:
    try:
        answer = svc.authenticator.session.get(f"{svc.settings.auth_service_url}/health", timeout=2)
        return "connected" if answer.status_code == 200 else "disconnected"
    except requests.RequestException:
        return "disconnected"


def _worker_state(svc, kind: str) -> str:
    """A kind's workers are `connected` when one heart-beat within the last 30 s."""
    try:
        with svc.db.transaction() as conn:
            return "connected" if workers.live_workers(conn, kind=kind) else "disconnected"
    except db.OperationalError:
        return "unknown"


@blp.route("/stats/uploads")
@PUBLIC
def upload_stats() -> Response:
    """Uploads (count, bytes) and conversions by status: the caller's own when
    authenticated as a user, everyone's for an admin or an anonymous call (totals only)."""
    principal = g.get("principal")
    owner = principal.user_id if principal is not None and not principal.is_admin else None
    svc = services()
    with svc.db.transaction() as conn:
        stats = files.upload_stats(conn, owner_id=owner)
    stats["bytes_readable"] = readable_size(stats["bytes"])
    return jsonify({"uploads": stats, "scope": "own" if owner else "all"})


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
    body, content_type = metrics.render(services().db)
    return Response(body, content_type=content_type)
