"""Who may call what through the gateway: credentials on every protected route (including
the /api/v1/auth routes it forwards to auth-service), token checks, API-key scopes, and
ownership of jobs across seed 000's and the canonical routes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.conftest import DEMO, make_api_key, make_api_user

pytestmark = pytest.mark.usefixtures("filespace")


def test_users_see_only_their_own_jobs(client, admin):
    alice, bob = make_api_user(client, admin, "alice"), make_api_user(client, admin, "bob")
    job_id = client.post(
        "/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=alice
    ).json["jobId"]
    assert client.get(f"/api/v1/cache/jobs/{job_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/v1/cache/jobs/{job_id}", headers=bob).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", headers=bob).status_code == 404
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bob).status_code == 404
    assert client.get("/api/v1/cache/jobs", headers=bob).json["total"] == 0
    assert client.get("/api/v1/jobs", headers=bob).json == []
    assert client.get("/api/v1/jobs", headers=alice).headers["X-Total-Count"] == "1"
    # Admins see everyone's.
    assert client.get(f"/api/v1/cache/jobs/{job_id}", headers=admin).status_code == 200
    assert client.get(f"/api/v1/cache/jobs/{job_id}", headers=alice).status_code == 200


def test_every_protected_route_is_401_without_credentials(client):
    job = "6bb4629b-1487-477c-96fe-b762d82a099b"
    routes = [
        ("post", "/api/v1/cache/jobs"),
        ("get", "/api/v1/cache/jobs"),
        ("get", f"/api/v1/cache/jobs/{job}"),
        ("delete", f"/api/v1/cache/jobs/{job}"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs"),
        ("get", f"/api/v1/jobs/{job}"),
        ("delete", f"/api/v1/jobs/{job}"),
        ("post", f"/api/v1/jobs/{job}/cancel"),
        ("post", f"/api/v1/jobs/{job}/retry"),
        ("get", f"/api/v1/jobs/{job}/logs"),
        ("get", "/api/v1/auth/me"),
        ("get", "/api/v1/auth/api-keys"),
        ("get", "/api/v1/auth/users"),
    ]
    for method, url in routes:
        r = getattr(client, method)(url)
        assert r.status_code == 401, (method, url, r.status_code)
        assert r.is_json


def test_expired_and_tampered_tokens_are_401(client, admin, gateway_settings):
    token = admin["Authorization"].split()[1]
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    r = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHORIZED"
    # A token signed by someone else's key, even with our kid, is refused.
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": kid})
    assert (
        client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )
    # An expired token signed with auth-service's real key: refused as expired, not forged.
    real_key = serialization.load_pem_private_key(
        Path(gateway_settings.jwt_private_key_file).read_bytes(), password=None
    )
    expired = {
        **claims,
        "exp": int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).timestamp()),
    }
    stale = jwt.encode(expired, real_key, algorithm="RS256", headers={"kid": kid})
    r = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {stale}"})
    assert r.status_code == 401 and r.json["error"]["message"] == "Token expired"


def test_an_admins_narrow_api_key_is_not_an_admin(client, admin):
    reader = make_api_key(client, admin, "reader", scopes=["jobs:read"])
    assert client.get("/api/v1/jobs", headers=reader).status_code == 200
    r = client.post(
        "/api/v1/jobs", json={"kind": "cache", "files": ["00_Media/video.mp4"]}, headers=reader
    )
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert client.get("/api/v1/auth/users", headers=reader).status_code == 403
    # Another user's job stays invisible to it: without the admin scope it sees its own only.
    alice = make_api_user(client, admin, "alice2")
    job_id = client.post(
        "/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=alice
    ).json["jobId"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=reader).status_code == 404
    # The demo key carries every scope, admin included.
    assert client.get(f"/api/v1/jobs/{job_id}", headers=DEMO).status_code == 200
