"""The gateway's rate limits: job creation (shared by seed 000's and the canonical route,
polling exempt) and password guessing on the forwarded login route."""

from __future__ import annotations

import pytest

from jobgate_gateway import create_app
from tests.integration.conftest import DEMO

pytestmark = pytest.mark.usefixtures("filespace")


def test_rate_limit_on_creation_with_headers_but_not_on_polling(gateway_settings):
    app = create_app(gateway_settings.replace(rate_limit_job_create="3/minute"))
    client = app.test_client()
    body = {"files": ["00_Media/video.mp4"]}
    ids = [
        client.post("/api/v1/cache/jobs", json=body, headers=DEMO).json["jobId"] for _ in range(3)
    ]
    r = client.post("/api/v1/cache/jobs", json=body, headers=DEMO)
    assert r.status_code == 429
    assert r.json == {"success": False, "error": "Too many requests, please try again later"}
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "0"
    # The canonical route shares the creation budget and answers in its own format.
    r = client.post("/api/v1/jobs", json={"kind": "cache", **body}, headers=DEMO)
    assert r.status_code == 429 and r.json["error"]["code"] == "RATE_LIMITED"
    for _ in range(20):
        assert client.get(f"/api/v1/cache/jobs/{ids[0]}", headers=DEMO).status_code == 200


def test_password_guessing_is_rate_limited_per_address(gateway_settings):
    client = create_app(gateway_settings.replace(rate_limit_login="3/minute")).test_client()
    codes = [
        client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "guess"}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    assert client.get("/api/v1/auth/me", headers=DEMO).status_code == 200  # other routes unaffected
