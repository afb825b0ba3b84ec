"""The gateway's health blueprint: /health and /health/services (each service's state) and
/stats/uploads."""

from __future__ import annotations

from tests.integration.conftest import DEMO, upload


def test_health_reports_auth_and_converter(client):
    body = client.get("/health").json
    assert body["services"]["auth"] == "connected" and body["services"]["database"] == "connected"
    assert body["services"]["converter"] == "disconnected"  # no convert worker runs here
    assert body["status"] == "degraded"
    detail = client.get("/health/services").json["services"]
    assert detail["rabbitmq"]["status"] == "connected" and detail["converter"]["count"] == 0


def test_upload_stats(client, video):
    upload(client, "clip.mp4", video.read_bytes(), url="/upload")
    stats = client.get("/stats/uploads", headers=DEMO).json["uploads"]
    assert stats["count"] == 1 and stats["bytes"] == video.stat().st_size
    assert stats["by_status"] == {"pending": 1}
