"""Seed 000's cache API and the canonical job API through the gateway, with a real
auth-service, PostgreSQL and RabbitMQ behind it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import jwt
import pika
import pytest
from cryptography.hazmat.primitives import serialization

from jobgate.broker import declare_topology, job_queue
from jobgate_gateway import create_app
from tests.integration.conftest import ADMIN_PASSWORD, DEMO_KEY

DEMO = {"X-API-Key": DEMO_KEY}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def filespace(settings):
    from pathlib import Path

    root = Path(settings.cache_root)
    farm = root / "00_Media" / "Farm" / "ProRes422"
    farm.mkdir(parents=True)
    for i in range(3):
        (farm / f"Farm0010{i}.mov").write_bytes(b"x" * (1000 + i))
    (root / "00_Media" / "video.mp4").write_bytes(b"v" * 5000)
    (root.parent / "outside.txt").write_text("secret")
    return root


@pytest.fixture
def gateway_settings(settings, amqp_url, auth_server, filespace):
    return settings.replace(amqp_url=amqp_url, auth_service_url=auth_server)


@pytest.fixture
def client(gateway_settings):
    app = create_app(gateway_settings)
    yield app.test_client()
    app.extensions["jobgate"].publisher.close()


def login(client, username, password) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['access_token']}"}


@pytest.fixture
def admin(client):
    return login(client, "admin", ADMIN_PASSWORD)


def make_user(client, admin, name: str) -> dict[str, str]:
    r = client.post(
        "/api/v1/auth/users", json={"username": name, "password": "password-" + name}, headers=admin
    )
    assert r.status_code == 201, r.json
    return login(client, name, "password-" + name)


# --- seed 000, word for word ---------------------------------------------------------------


def test_health_reports_database_and_broker(client):
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json
    assert body["success"] is True and body["status"] == "healthy"
    assert body["service"] == "api-gateway" and body["database"] == "connected"
    assert body["broker"] == "connected"
    assert ISO_MS.match(body["timestamp"])


def test_health_is_503_when_the_broker_is_down(gateway_settings):
    app = create_app(gateway_settings.replace(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F"))
    r = app.test_client().get("/api/v1/health")
    assert r.status_code == 503
    assert r.json["status"] == "unhealthy" and r.json["broker"] == "disconnected"
    assert r.json["database"] == "connected"


def test_seed_quick_start_creates_a_job_with_real_totals(client, amqp_url):
    body = {
        "files": ["00_Media/Farm/ProRes422/Farm00100.mov"],
        "directories": ["00_Media/Farm/ProRes422"],
        "recursive": True,
    }
    r = client.post("/api/v1/cache/jobs", json=body, headers=DEMO)
    assert r.status_code == 201, r.json
    created = r.json
    assert set(created) == {
        "success",
        "jobId",
        "status",
        "totalFiles",
        "totalSize",
        "message",
        "createdAt",
    }
    assert created["success"] is True and created["status"] == "pending"
    assert created["totalFiles"] == 3  # the file named twice is cached once
    assert created["totalSize"] == {"bytes": 3003, "readable": "2.93 KB"}
    assert created["message"] == "Cache job created successfully"
    assert ISO_MS.match(created["createdAt"])
    # The message is on its queue, carrying only the job id, kind and attempt.
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    declare_topology(ch)
    method, _props, payload = ch.basic_get(job_queue("cache"), auto_ack=True)
    conn.close()
    assert method is not None and created["jobId"] in payload.decode()


def test_three_client_spellings_name_one_file(client):
    files = [
        "/Volumes/dmpfs/tc-east-1/00_Media/video.mp4",
        "C:\\dmpfs\\tc-east-1\\00_Media\\video.mp4",
        "/mnt/lucidlink/tc-east-1/00_Media/video.mp4",
    ]
    r = client.post("/api/v1/cache/jobs", json={"files": files}, headers=DEMO)
    assert r.status_code == 201
    assert r.json["totalFiles"] == 1 and r.json["totalSize"]["bytes"] == 5000


def test_status_and_list_bodies(client):
    job_id = client.post(
        "/api/v1/cache/jobs", json={"directories": ["00_Media"]}, headers=DEMO
    ).json["jobId"]
    r = client.get(f"/api/v1/cache/jobs/{job_id}", headers=DEMO)
    assert r.status_code == 200
    job = r.json["job"]
    assert r.json["success"] is True
    assert job["id"] == job_id and job["status"] == "pending" and job["totalFiles"] == 4
    assert job["progress"]["files"] == {"completed": 0, "failed": 0, "total": 4, "percentage": 0}
    size = job["progress"]["size"]
    assert size["totalBytes"] == 8003 and size["totalReadable"] == "7.82 KB"
    assert size["completedBytes"] == 0 and size["completedReadable"] == "0 B"
    assert job["progress"]["percentage"] == 0
    assert "throughput" in job and job["throughput"] is None
    assert job["startedAt"] is None and job["completedAt"] is None and job["error"] is None

    client.post("/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=DEMO)
    r = client.get("/api/v1/cache/jobs?limit=1", headers=DEMO)
    assert r.status_code == 200 and r.json["success"] is True
    assert r.json["total"] == 2 and len(r.json["jobs"]) == 1
    item = r.json["jobs"][0]
    for key in (
        "id",
        "status",
        "totalFiles",
        "totalSizeBytes",
        "totalSizeReadable",
        "completedFiles",
        "completedSizeBytes",
        "completedSizeReadable",
        "createdAt",
        "completedAt",
    ):
        assert key in item
    assert client.get("/api/v1/cache/jobs?status=completed", headers=DEMO).json["total"] == 0
    assert client.get("/api/v1/cache/jobs?status=bogus", headers=DEMO).status_code == 400


def test_seed_error_bodies_word_for_word(client):
    assert client.get("/api/v1/cache/jobs").json == {
        "success": False,
        "error": "Invalid or missing API key",
    }
    r = client.get("/api/v1/cache/jobs", headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and r.json == {
        "success": False,
        "error": "Invalid or missing API key",
    }
    r = client.get("/api/v1/cache/jobs/not-a-uuid", headers=DEMO)
    assert (
        r.status_code == 400
        and r.json["error"] == "Invalid job ID format"
        and r.json["success"] is False
    )
    r = client.get("/api/v1/cache/jobs/6bb4629b-1487-477c-96fe-b762d82a099b", headers=DEMO)
    assert r.status_code == 404 and r.json == {"success": False, "error": "Job not found"}
    r = client.delete("/api/v1/cache/jobs/6bb4629b-1487-477c-96fe-b762d82a099b", headers=DEMO)
    assert r.status_code == 404 and r.json["error"] == "Job not found"


@pytest.mark.parametrize(
    "path",
    [
        "../outside.txt",
        "00_Media/../../outside.txt",
        "/etc/passwd",
        "\\\\server\\share\\x.mov",
        "a\x00b",
    ],
)
def test_paths_leaving_the_root_are_400_naming_the_path(client, path):
    r = client.post("/api/v1/cache/jobs", json={"files": [path]}, headers=DEMO)
    assert r.status_code == 400
    assert r.json["success"] is False and path in r.json["error"]


def test_symlink_out_of_the_root_is_refused(client, filespace):
    (filespace / "00_Media" / "escape.mov").symlink_to(filespace.parent / "outside.txt")
    r = client.post("/api/v1/cache/jobs", json={"files": ["00_Media/escape.mov"]}, headers=DEMO)
    assert r.status_code == 400 and "escapes the cache root" in r.json["error"]


def test_missing_files_are_listed(client):
    r = client.post(
        "/api/v1/cache/jobs",
        json={"files": ["nope.mov", "00_Media/video.mp4"], "directories": ["gone"]},
        headers=DEMO,
    )
    assert r.status_code == 400
    assert r.json["error"] == "Paths not found: nope.mov, gone"
    assert r.json["details"] == {"missing": ["nope.mov", "gone"]}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"files": "not-a-list"}', "application/json"),
        ('{"files": [1, 2]}', "application/json"),
        ('{"recursive": "maybe", "files": ["00_Media/video.mp4"]}', "application/json"),
        ("[]", "application/json"),
        ("{}", "application/json"),
        ('{"files": []}', "application/json"),
        ("files=x", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_400_json(client, data, content_type):
    r = client.post("/api/v1/cache/jobs", data=data, content_type=content_type, headers=DEMO)
    assert r.status_code == 400, r.data
    assert r.is_json and r.json["success"] is False and r.json["error"]
    r = client.post("/api/v1/jobs", data=data, content_type=content_type, headers=DEMO)
    assert r.status_code == 400, r.data
    assert r.is_json and r.json["error"]["code"] == "INVALID_REQUEST"


def test_cancel_pending_job_then_conflict(client):
    job_id = client.post(
        "/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=DEMO
    ).json["jobId"]
    r = client.delete(f"/api/v1/cache/jobs/{job_id}", headers=DEMO)
    assert r.status_code == 200 and r.json == {
        "success": True,
        "message": "Job cancelled successfully",
    }
    job = client.get(f"/api/v1/cache/jobs/{job_id}", headers=DEMO).json["job"]
    assert job["status"] == "cancelled" and ISO_MS.match(job["completedAt"])
    r = client.delete(f"/api/v1/cache/jobs/{job_id}", headers=DEMO)
    assert r.status_code == 409 and r.json["success"] is False


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


# --- ownership and credentials ------------------------------------------------------------


def test_users_see_only_their_own_jobs(client, admin):
    alice, bob = make_user(client, admin, "alice"), make_user(client, admin, "bob")
    job_id = client.post(
        "/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=alice
    ).json["jobId"]
    assert client.get(f"/api/v1/cache/jobs/{job_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/v1/cache/jobs/{job_id}", headers=bob).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", headers=bob).status_code == 404
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bob).status_code == 404
    assert client.get("/api/v1/cache/jobs", headers=bob).json["total"] == 0
    assert client.get("/api/v1/jobs", headers=bob).json["total"] == 0
    assert client.get("/api/v1/jobs", headers=alice).json["total"] == 1
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


# --- canonical API ------------------------------------------------------------------------


def test_canonical_submit_read_cancel_retry_and_logs(client):
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "cache", "directories": ["00_Media/Farm"], "priority": 8, "max_attempts": 2},
        headers=DEMO,
    )
    assert r.status_code == 201, r.json
    job = r.json
    assert job["kind"] == "cache" and job["status"] == "pending" and job["priority"] == 8
    assert job["max_attempts"] == 2 and job["progress"]["items_total"] == 3
    assert job["progress"]["bytes_total_readable"] == "2.93 KB"
    r = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=DEMO)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    r = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "pending" and r.json["attempt"] == 0
    assert client.get(f"/api/v1/jobs/{job['id']}/logs", headers=DEMO).json["logs"] == []
    listed = client.get(
        "/api/v1/jobs?kind=cache&status=pending&sort=priority&order=asc", headers=DEMO
    ).json
    assert listed["total"] == 1 and listed["jobs"][0]["id"] == job["id"]


def test_unknown_kind_and_bad_options_are_400(client):
    r = client.post("/api/v1/jobs", json={"kind": "teleport"}, headers=DEMO)
    assert r.status_code == 400 and "teleport" in r.json["error"]["message"]
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "cache", "files": ["00_Media/video.mp4"], "priority": 42},
        headers=DEMO,
    )
    assert r.status_code == 400 and "priority" in r.json["error"]["details"]["fields"]
    r = client.post("/api/v1/jobs", json={"kind": "cache", "filez": ["x"]}, headers=DEMO)
    assert r.status_code == 400


def test_idempotency_key_replays_and_conflicts(client):
    headers = {**DEMO, "Idempotency-Key": "order-42"}
    body = {"kind": "cache", "files": ["00_Media/video.mp4"]}
    first = client.post("/api/v1/jobs", json=body, headers=headers)
    again = client.post("/api/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["id"] == again.json["id"]
    other = client.post("/api/v1/jobs", json={**body, "recursive": False}, headers=headers)
    assert other.status_code == 409


def test_an_admins_narrow_api_key_is_not_an_admin(client, admin):
    r = client.post(
        "/api/v1/auth/api-keys", json={"name": "reader", "scopes": ["jobs:read"]}, headers=admin
    )
    assert r.status_code == 201, r.json
    reader = {"X-API-Key": r.json["key"]}
    assert client.get("/api/v1/jobs", headers=reader).status_code == 200
    r = client.post(
        "/api/v1/jobs", json={"kind": "cache", "files": ["00_Media/video.mp4"]}, headers=reader
    )
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert client.get("/api/v1/auth/users", headers=reader).status_code == 403
    # Another user's job stays invisible to it: without the admin scope it sees its own only.
    alice = make_user(client, admin, "alice2")
    job_id = client.post(
        "/api/v1/cache/jobs", json={"files": ["00_Media/video.mp4"]}, headers=alice
    ).json["jobId"]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=reader).status_code == 404
    # The demo key carries every scope, admin included.
    assert client.get(f"/api/v1/jobs/{job_id}", headers=DEMO).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("get", "/api/v1/jobs?offset=99999999999999999999", {}),
        ("get", "/api/v1/cache/jobs?offset=99999999999999999999", {}),
        ("get", "/api/v1/jobs?limit=-1", {}),
        ("get", "/api/v1/jobs?created_since=yesterday", {}),
        ("post", "/api/v1/cache/jobs", {"json": {"files": ["a\ud800b"]}}),
        (
            "post",
            "/api/v1/jobs",
            {"json": {"kind": "cache", "files": ["x"]}, "headers": {"Idempotency-Key": "k" * 300}},
        ),
        ("post", "/api/v1/jobs", {"json": {"kind": ["cache"]}}),
        (
            "post",
            "/api/v1/jobs",
            {"json": {"kind": "cache", "files": ["x"], "max_attempts": "lots"}},
        ),
    ],
)
def test_odd_inputs_are_400_not_500(client, method, url, kwargs):
    headers = {**DEMO, **kwargs.pop("headers", {})}
    r = getattr(client, method)(url, headers=headers, **kwargs)
    assert r.status_code == 400, r.data
    assert r.is_json


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
