"""The canonical schedule API (/api/v1/schedules) through the gateway: create, list, read,
change, toggle and delete, the 400s its inputs can earn, another user's schedule as a 404,
and run counters that follow the outcomes of the jobs a schedule made."""

from __future__ import annotations

import shutil

import pytest

from jobgate import schedules
from jobgate.broker import Publisher
from jobgate.outbox import relay
from tests.factories.jobs import wait_for_job
from tests.integration.conftest import DEMO, make_api_key, make_api_user

pytestmark = pytest.mark.usefixtures("filespace")

FARM = {"name": "Warm the farm", "kind": "cache", "directories": ["00_Media/Farm"]}


def create(client, headers=DEMO, **body):
    return client.post("/api/v1/schedules", json={**FARM, **body}, headers=headers)


def test_create_list_read_change_toggle_and_delete(client):
    r = create(client, interval_minutes=60, priority=7)
    assert r.status_code == 201, r.json
    made = r.json
    assert made["kind"] == "cache" and made["enabled"] and made["interval_minutes"] == 60
    assert made["params"] == {"files": [], "directories": ["00_Media/Farm"], "recursive": True}
    assert (made["priority"], made["max_attempts"], made["cron"]) == (7, None, None)
    assert made["next_run_at"] and made["last_run_at"] is None  # due at once
    assert (made["total_runs"], made["successful_runs"], made["failed_runs"]) == (0, 0, 0)
    url = f"/api/v1/schedules/{made['id']}"

    listed = client.get("/api/v1/schedules?kind=cache&enabled=true", headers=DEMO).json
    assert listed["total"] == 1 and listed["schedules"][0]["id"] == made["id"]
    assert (listed["limit"], listed["offset"]) == (50, 0)
    assert client.get(url, headers=DEMO).json == made

    r = client.patch(url, json={"cron": "0 3 * * *", "max_attempts": 2}, headers=DEMO)
    assert r.status_code == 200, r.json
    assert (r.json["cron"], r.json["interval_minutes"], r.json["max_attempts"]) == (
        "0 3 * * *",
        None,
        2,
    )
    assert r.json["priority"] == 7  # options not sent stay
    r = client.patch(
        url, json={"interval_minutes": 30, "cron": None, "recursive": False}, headers=DEMO
    )
    assert (
        r.status_code == 400 and r.json["error"]["message"] == "No files found for the given paths"
    )
    r = client.patch(
        url,
        json={"interval_minutes": 30, "cron": None, "files": ["00_Media/video.mp4"]},
        headers=DEMO,
    )
    assert r.status_code == 200, r.json
    assert (r.json["interval_minutes"], r.json["cron"]) == (30, None)
    assert r.json["params"] == {
        "files": ["00_Media/video.mp4"],
        "directories": ["00_Media/Farm"],
        "recursive": True,
    }
    assert client.patch(url, json={"max_attempts": None}, headers=DEMO).json["max_attempts"] is None

    off = client.post(f"{url}/toggle", headers=DEMO).json
    assert not off["enabled"] and off["next_run_at"] is None
    assert client.get("/api/v1/schedules?enabled=true", headers=DEMO).json["total"] == 0
    assert client.get("/api/v1/schedules?enabled=false", headers=DEMO).json["total"] == 1
    on = client.post(f"{url}/toggle", headers=DEMO).json
    assert on["enabled"] and on["next_run_at"]

    r = client.delete(url, headers=DEMO)
    assert r.status_code == 204 and r.data == b""
    assert client.get(url, headers=DEMO).status_code == 404
    assert client.get("/api/v1/schedules", headers=DEMO).json["total"] == 0


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"interval_minutes": 4}, "interval_minutes"),
        ({"interval_minutes": 5, "cron": "0 * * * *"}, "exactly one"),
        ({}, "exactly one"),
        ({"cron": "61 * * * *"}, "Invalid cron expression"),
        ({"cron": "every day"}, "five fields"),
        ({"cron": "0 0 * * * *"}, "five fields"),
        ({"cron": "*/2 * * * *"}, "more often than every 5 minutes"),
        ({"cron": "0 0 31 2 *"}, "Invalid cron expression"),
        ({"interval_minutes": 5, "kind": "teleport"}, "Unsupported job kind 'teleport'"),
        ({"interval_minutes": 5, "directories": []}, "Request validation failed"),
        ({"interval_minutes": 5, "filez": ["x"]}, "Request validation failed"),
        ({"interval_minutes": 5, "directories": ["nope"]}, "Paths not found: nope"),
        ({"interval_minutes": 5, "directories": ["../outside.txt"]}, "Invalid path"),
        ({"interval_minutes": 5, "name": ""}, "Request validation failed"),
        ({"interval_minutes": 5, "priority": 10}, "Request validation failed"),
    ],
)
def test_bad_schedules_are_400(client, body, text):
    r = create(client, **body)
    assert r.status_code == 400, r.json
    assert text in r.json["error"]["message"] or text in str(r.json["error"]["details"])


def test_convert_cannot_be_scheduled(client):
    upload_id = "6bb4629b-1487-477c-96fe-b762d82a099b"
    body = {"name": "again", "kind": "convert", "input_file": upload_id, "interval_minutes": 60}
    r = client.post("/api/v1/schedules", json=body, headers=DEMO)
    assert r.status_code == 400
    assert r.json["error"]["message"].startswith("Jobs of kind 'convert' cannot be scheduled")
    assert "convert" not in r.json["error"]["details"]["supported"]


def test_bad_changes_are_400_and_leave_the_schedule_alone(client):
    made = create(client, interval_minutes=60).json
    url = f"/api/v1/schedules/{made['id']}"
    for body in (
        {"interval_minutes": 4},
        {"interval_minutes": 10, "cron": "0 * * * *"},
        {"cron": "nonsense"},
        {"directories": ["gone"]},
        {"kind": "convert"},
        {"priority": "high"},
    ):
        r = client.patch(url, json=body, headers=DEMO)
        assert r.status_code == 400, (body, r.json)
    assert client.get(url, headers=DEMO).json == made
    assert client.get("/api/v1/schedules/not-a-uuid", headers=DEMO).status_code == 400


def test_another_users_schedule_is_a_404_and_admins_see_all(client, admin):
    mine = create(client, interval_minutes=60).json
    url = f"/api/v1/schedules/{mine['id']}"
    other = make_api_user(client, admin, "mallory")
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, json={"name": "x"}, headers=other).status_code == 404
    assert client.post(f"{url}/toggle", headers=other).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get("/api/v1/schedules", headers=other).json["total"] == 0
    assert client.get(url, headers=admin).json["id"] == mine["id"]
    theirs = create(client, headers=other, interval_minutes=5).json
    assert theirs["owner_id"] != mine["owner_id"]
    assert client.get("/api/v1/schedules", headers=admin).json["total"] == 2
    reader = make_api_key(client, other, "reader", scopes=["jobs:read"])
    assert create(client, headers=reader, interval_minutes=5).status_code == 403
    assert client.get("/api/v1/schedules", headers=reader).json["total"] == 1
    assert client.get(url, headers=DEMO).json == mine  # untouched


def test_counters_follow_the_jobs_a_schedule_made(
    client, db, worker_settings, start_worker, filespace, amqp_url
):
    made = create(client, interval_minutes=5).json
    url = f"/api/v1/schedules/{made['id']}"
    start_worker("cache")
    with db.transaction() as conn:
        [run] = schedules.fire_due(conn, settings=worker_settings, app_id="test")
    publisher = Publisher(amqp_url, app_id="test")
    try:
        relay(db, publisher, ids=[run.outbox_id])
    finally:
        publisher.close()
    wait_for_job(db, run.job["id"], {"completed"})
    after_one = client.get(url, headers=DEMO).json
    assert (after_one["total_runs"], after_one["successful_runs"]) == (1, 1)
    assert after_one["last_run_at"] and after_one["next_run_at"] > after_one["last_run_at"]

    # The folder vanished before the next run: that run is a failed job, counted as such.
    shutil.rmtree(filespace / "00_Media" / "Farm")
    with db.transaction() as conn:
        due = schedules.get(conn, schedule_id=made["id"])["next_run_at"]
        [failed] = schedules.fire_due(conn, settings=worker_settings, app_id="test", now=due)
    assert failed.job["status"] == "failed" and "Paths not found" in failed.job["error"]
    counters = client.get(url, headers=DEMO).json
    assert (counters["total_runs"], counters["successful_runs"], counters["failed_runs"]) == (
        2,
        1,
        1,
    )
    job = client.get(f"/api/v1/jobs/{failed.job['id']}", headers=DEMO).json
    assert "Paths not found" in str(job)
