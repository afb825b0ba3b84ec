"""Liveness with a database check, for the gateway's health map and Kubernetes probes."""

from __future__ import annotations

from typing import Any

from jobgate.auth_schemas import HealthSchema
from jobgate.web import Blueprint
from jobgate_auth.state import get_state

blp = Blueprint("health", __name__, description="Service health")


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="Database unreachable")
def health() -> tuple[dict[str, Any], int]:
    connected = get_state().db.ping()
    body = {
        "status": "healthy" if connected else "unhealthy",
        "service": "auth-service",
        "database": "connected" if connected else "disconnected",
    }
    return body, 200 if connected else 503
