"""The canonical job API (/api/v1/jobs) through the gateway: submit any kind, read, list,
cancel, retry, logs, idempotency keys, and the 400s its inputs can earn."""

from __future__ import annotations

import pytest

from tests.integration.conftest import DEMO, upload

pytestmark = pytest.mark.usefixtures("filespace")


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


def test_canonical_convert_job_validates_its_input(client, video):
    file_id = upload(client, "clip.mp4", video.read_bytes()).json["id"]
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "convert", "input_file": file_id, "bitrate": "128k"},
        headers=DEMO,
    )
    assert r.status_code == 201 and r.json["params"]["bitrate"] == "128k"
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "convert", "input_file": file_id, "bitrate": "7k"},
        headers=DEMO,
    )
    assert r.status_code == 400
    r = client.post("/api/v1/jobs", json={"kind": "convert", "input_file": "nope"}, headers=DEMO)
    assert r.status_code == 400
