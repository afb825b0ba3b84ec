"""Seed 002's routes through the gateway, as its clients call them: scrape jobs on
/api/v1/jobs (flat create, `{"job", "videos", "drive_links"}`, arrays), videos, scheduled
jobs, stats; errors with `detail`. Videos are made by the factory (the scrape worker itself
is tested in test_scrape_worker.py)."""

from __future__ import annotations

import pytest

from jobgate import jobs
from tests.factories.videos import make_video_row
from tests.integration.conftest import DEMO, make_api_user

SEED_JOB = {"mode": "profile", "value": "khaby.lame", "limit": 50, "no_watermark": True}


def create(client, body=None, headers=DEMO):
    return client.post("/api/v1/jobs", json=body or SEED_JOB, headers=headers)


def test_a_seed_body_is_a_scrape_job_in_the_seeds_shapes(client):
    r = create(client)
    assert r.status_code == 201, r.json
    job = r.json
    assert job["kind"] == "scrape" and job["status"] == "pending" and job["progress"] == 0
    for field, value in {**SEED_JOB, "total_videos": 0, "successful_downloads": 0}.items():
        assert job[field] == value, field
    assert job["failed_downloads"] == 0 and job["created_at"].endswith("Z")
    got = client.get(f"/api/v1/jobs/{job['id']}", headers=DEMO).json
    assert got["job"]["mode"] == "profile" and got["job"]["value"] == "khaby.lame"
    assert got["videos"] == [] and got["drive_links"] == []
    listed = client.get("/api/v1/jobs?status=pending&limit=10&offset=0", headers=DEMO)
    assert [j["id"] for j in listed.json] == [job["id"]] and listed.headers["X-Total-Count"] == "1"
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SEED_JOB, "mode": "user"}, "mode"),
        ({**SEED_JOB, "limit": 0}, "limit"),
        ({**SEED_JOB, "limit": 201}, "limit"),
        ({"mode": "hashtag"}, "value"),
    ],
)
def test_invalid_scrape_bodies_are_400_with_detail(client, body, field):
    r = create(client, body)
    assert r.status_code == 400
    assert any(e["loc"][-1] == field for e in r.json["detail"]), r.json
    assert r.json["error"]["code"] == "INVALID_REQUEST"


def test_videos_can_be_queried_read_retried_and_deleted(client, db, admin):
    created = create(client).json
    with db.transaction() as conn:
        row = jobs.get_job(conn, job_id=created["id"])
    make_video_row(db, row, "7001", status="failed", hashtags=["funny", "cats"])
    make_video_row(db, row, "7002", status="pending", author_username="khaby.lame")
    r = client.get("/api/v1/videos?mode=profile&value=khaby.lame&limit=20", headers=DEMO)
    assert r.status_code == 200 and r.json["total"] == 2
    assert {v["id"] for v in r.json["videos"]} == {"7001", "7002"}
    tagged = client.get("/api/v1/videos?hashtag=%23Funny", headers=DEMO).json
    assert [v["id"] for v in tagged["videos"]] == ["7001"]
    assert client.get("/api/v1/videos?status=failed", headers=DEMO).json["total"] == 1
    video = client.get("/api/v1/videos/7001", headers=DEMO).json
    assert video["job_id"] == created["id"] and video["status"] == "failed"
    assert video["hashtags"] == ["funny", "cats"]

    retried = client.post("/api/v1/videos/7001/retry", headers=DEMO)
    assert retried.status_code == 200, retried.json
    assert retried.json["job"]["kind"] == "scrape"
    assert retried.json["job"]["params"]["video_ids"] == ["7001"]

    mallory = make_api_user(client, admin, "mallory")
    assert client.get("/api/v1/videos/7001", headers=mallory).status_code == 404
    assert client.get("/api/v1/videos", headers=mallory).json["total"] == 0
    assert client.delete("/api/v1/videos/7001", headers=mallory).status_code == 404
    r = client.delete("/api/v1/videos/7001", headers=DEMO)
    assert r.status_code == 204
    r = client.get("/api/v1/videos/7001", headers=DEMO)
    assert r.status_code == 404 and r.json["detail"] == "Video not found"


def test_deleting_a_scrape_job_takes_its_videos(client, db):
    created = create(client).json
    with db.transaction() as conn:
        row = jobs.get_job(conn, job_id=created["id"])
    make_video_row(db, row, "7101")
    assert client.delete(f"/api/v1/jobs/{created['id']}", headers=DEMO).status_code == 204
    assert client.get("/api/v1/videos/7101", headers=DEMO).status_code == 404


def test_scheduled_jobs_as_the_seed_shows(client, admin):
    body = {
        "name": "Daily Scrape - @khaby.lame",
        **SEED_JOB,
        "interval_minutes": 1440,
        "enabled": True,
    }
    r = client.post("/api/v1/scheduled-jobs", json=body, headers=DEMO)
    assert r.status_code == 201, r.json
    schedule = r.json
    for field in ("name", "mode", "value", "limit", "interval_minutes", "enabled"):
        assert schedule[field] == body[field], field
    assert schedule["next_run_at"] and schedule["last_run_at"] is None
    assert (schedule["total_runs"], schedule["successful_runs"], schedule["failed_runs"]) == (
        0,
        0,
        0,
    )
    sid = schedule["id"]
    listed = client.get("/api/v1/scheduled-jobs?enabled=true", headers=DEMO).json
    assert [s["id"] for s in listed] == [sid]
    assert client.get("/api/v1/scheduled-jobs?enabled=false", headers=DEMO).json == []
    assert client.get(f"/api/v1/scheduled-jobs/{sid}", headers=DEMO).json["id"] == sid
    patched = client.patch(
        f"/api/v1/scheduled-jobs/{sid}", json={"interval_minutes": 60, "limit": 10}, headers=DEMO
    ).json
    assert patched["interval_minutes"] == 60 and patched["limit"] == 10
    assert patched["value"] == "khaby.lame"
    toggled = client.post(f"/api/v1/scheduled-jobs/{sid}/toggle", headers=DEMO)
    assert toggled.status_code == 200 and toggled.json["enabled"] is False

    r = client.post("/api/v1/scheduled-jobs", json={**body, "interval_minutes": 4}, headers=DEMO)
    assert r.status_code == 400 and r.json["detail"][0]["loc"] == ["body", "interval_minutes"]
    mallory = make_api_user(client, admin, "mallory")
    assert client.get(f"/api/v1/scheduled-jobs/{sid}", headers=mallory).status_code == 404
    assert client.delete(f"/api/v1/scheduled-jobs/{sid}", headers=mallory).status_code == 404
    assert client.delete(f"/api/v1/scheduled-jobs/{sid}", headers=DEMO).status_code == 204
    assert client.get(f"/api/v1/scheduled-jobs/{sid}", headers=DEMO).status_code == 404


def test_stats_and_health(client, db):
    created = create(client).json
    with db.transaction() as conn:
        row = jobs.get_job(conn, job_id=created["id"])
    make_video_row(db, row, "7201", status="failed")
    client.post(
        "/api/v1/scheduled-jobs",
        json={"name": "n", **SEED_JOB, "interval_minutes": 5, "enabled": False},
        headers=DEMO,
    )
    stats = client.get("/api/v1/stats", headers=DEMO).json
    assert stats["total_jobs"] == stats["pending_jobs"] == 1
    assert stats["total_videos"] == stats["failed_videos"] == 1
    assert stats["uploaded_videos"] == 0 and stats["total_storage_bytes"] == 0
    assert stats["scheduled_jobs_count"] == 1 and stats["active_scheduled_jobs"] == 0
    health = client.get("/api/v1/stats/health").json
    assert health["status"] == "healthy" and health["database"] is True
    assert health["google_drive"] is True
    assert health["scheduler"] is False  # no scheduler process heart-beats in this test


@pytest.mark.usefixtures("filespace")
def test_scheduled_jobs_show_only_scrape_schedules(client):
    r = client.post(
        "/api/v1/schedules",
        json={
            "name": "warm",
            "kind": "cache",
            "files": ["00_Media/video.mp4"],
            "interval_minutes": 60,
        },
        headers=DEMO,
    )
    assert r.status_code == 201, r.json
    cache_id = r.json["id"]
    assert client.get("/api/v1/scheduled-jobs", headers=DEMO).json == []
    for method, url in [
        ("get", f"/api/v1/scheduled-jobs/{cache_id}"),
        ("patch", f"/api/v1/scheduled-jobs/{cache_id}"),
        ("post", f"/api/v1/scheduled-jobs/{cache_id}/toggle"),
        ("delete", f"/api/v1/scheduled-jobs/{cache_id}"),
    ]:
        kwargs = {"json": {"limit": 5}} if method == "patch" else {}
        assert getattr(client, method)(url, headers=DEMO, **kwargs).status_code == 404, url
    assert client.get("/api/v1/stats", headers=DEMO).json["scheduled_jobs_count"] == 0
    assert client.get(f"/api/v1/schedules/{cache_id}", headers=DEMO).json["enabled"] is True
