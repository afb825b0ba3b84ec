"""Seed 001's routes through the gateway: /upload (which queues a convert job), /status and
/download, in seed 001's own words."""

from __future__ import annotations

import io

from tests.integration.conftest import DEMO, leftovers, upload


def test_seed_upload_status_and_early_download(client, video):
    r = upload(client, "clip.mp4", video.read_bytes(), url="/upload")
    assert r.status_code == 201, r.json
    assert r.json["message"] == "File uploaded successfully" and r.json["status"] == "queued"
    assert r.json["filename"] == "clip.mp4"
    job_id = r.json["job_id"]
    status = client.get(f"/status/{job_id}", headers=DEMO).json
    assert status["job_id"] == job_id and status["status"] == "queued" and status["progress"] == 0
    assert status["filename"] == "clip.mp4" and status["completed_at"] is None
    r = client.get(f"/download/{job_id}", headers=DEMO)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    job = client.get(f"/api/v1/jobs/{job_id}", headers=DEMO).json["job"]
    assert job["kind"] == "convert" and job["params"]["output_name"] == "clip.mp3"
    assert job["params"]["bitrate"] == "192k"


def test_refused_seed_upload_keeps_nothing(client, gateway_app, video, db):
    r = client.post(
        "/upload",
        data={"file": (io.BytesIO(video.read_bytes()), "clip.mp4"), "bitrate": "999k"},
        content_type="multipart/form-data",
        headers=DEMO,
    )
    assert r.status_code == 400 and "bitrate" in r.json["error"]["message"]
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM files")
        assert cur.fetchone()["n"] == 0
    objects = gateway_app.extensions["jobgate"].storage.objects
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert leftovers(gateway_app) == []
