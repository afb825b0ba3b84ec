"""Seed 003's /api/system/info and /api/health: authenticated, the seed's fields, and the
`docker` check answered by a container worker's RPC service against the run's real engine
(or `unhealthy` when no worker answers)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DEMO


def test_system_info_describes_the_gateway_process(client):
    body = client.get("/api/system/info", headers=DEMO).json
    assert set(body) == {"version", "uptime", "memory_usage", "cpu_usage", "active_connections"}
    assert body["memory_usage"] > 10 * 1024 * 1024  # a Python process with Flask loaded
    assert body["uptime"] >= 0 and body["cpu_usage"] >= 0
    assert body["active_connections"] >= 1  # this request


def test_seed003_routes_need_credentials(client):
    for path in ("/api/system/info", "/api/health"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.json["error"]["code"] == "UNAUTHORIZED"


@pytest.mark.usefixtures("engine_rpc")
def test_health_reports_the_engine_through_a_container_worker(client):
    body = client.get("/api/health", headers=DEMO).json
    assert body["checks"]["database"] == "healthy"
    assert body["checks"]["docker"] == "healthy"
    assert body["checks"]["redis"] in ("healthy", "not configured")
    assert body["status"] == "healthy" and body["timestamp"].endswith("Z")


def test_health_without_a_container_worker_is_degraded(client):
    answer = client.get("/api/health", headers=DEMO)
    assert answer.status_code == 200
    assert answer.json["checks"]["docker"] == "unhealthy"
    assert answer.json["status"] == "degraded"
