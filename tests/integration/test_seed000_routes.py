"""Seed 000's routes through the gateway, word for word: /api/v1/cache/jobs (create, status,
list, cancel) and /api/v1/health, with a real auth-service, PostgreSQL and RabbitMQ behind it."""

from __future__ import annotations

import re

import pika
import pytest

from jobgate.broker import declare_topology, job_queue
from jobgate_gateway import create_app
from tests.integration.conftest import DEMO

pytestmark = pytest.mark.usefixtures("filespace")

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


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
