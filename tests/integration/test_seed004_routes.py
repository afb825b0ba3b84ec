"""Seed 004 (Distributed Task Queue) through the gateway: tasks, workers, the envelope on
every answer, rate-limit headers, /health /ready /info and the login's `token`.

Most tests run without a worker: task rows are moved to each state with the factories, as
a task worker would leave them. The seed's "Create and Monitor Task" loop runs a real one.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pika
import pytest

from jobgate import db as jobgate_db
from jobgate import workers
from jobgate.jobs import STATUSES
from jobgate.kinds import task
from jobgate_gateway import create_app
from tests.factories.jobs import make_job
from tests.integration.conftest import DEMO, make_api_key, make_login

TASKS = "/api/v1/tasks"
WORKERS = "/api/v1/workers"
ISO_Z = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


@pytest.fixture
def alice(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "alice", ["jobs:read", "jobs:write"])


@pytest.fixture
def bob(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "bob", ["jobs:read", "jobs:write"])


def assert_success(body: dict[str, Any]) -> Any:
    assert body["status"] == "success", body
    assert body["timestamp"].endswith("Z")
    dt.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    return body["data"]


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """The seed's error envelope with our `request_id`."""
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"status", "error", "timestamp"}, body
    assert body["status"] == "error" and body["timestamp"].endswith("Z")
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    return body["error"]


def create_task(client, headers, **body: Any) -> dict[str, Any]:
    r = client.post(TASKS, json={"name": "Process Data", **body}, headers=headers)
    assert r.status_code == 201, r.get_json()
    return assert_success(r.get_json())


def set_columns(db, job_id: str, **columns: Any) -> None:
    """Move a job row as a worker would (its `updated_at` too)."""
    sets = ", ".join(
        [*(f"{name} = %({name})s" for name in columns), "updated_at = clock_timestamp()"]
    )
    with db.transaction() as conn:
        jobgate_db.execute(
            conn, f"UPDATE jobs SET {sets} WHERE id = %(id)s", {**columns, "id": job_id}
        )


def job_row(db, job_id: str) -> dict[str, Any]:
    with db.transaction() as conn:
        return jobgate_db.fetch_one(conn, "SELECT * FROM jobs WHERE id = %s", (job_id,))


def task_messages(amqp_url: str) -> list[tuple[dict[str, Any], int]]:
    """Every message waiting on the task queue: (body, priority), taken off it."""
    import json

    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    found = []
    try:
        channel = conn.channel()
        while True:
            method, properties, body = channel.basic_get(task.SPEC.queue_name, auto_ack=True)
            if method is None:
                return found
            found.append((json.loads(body), properties.priority))
    finally:
        conn.close()


# --- tasks ------------------------------------------------------------------------------------


def test_create_and_read_a_task_in_the_seed_shape(client, alice, db, gateway_settings):
    headers, user_id = alice
    seed_body = {
        "name": "Process Data",
        "description": "Process CSV file",
        "priority": "high",
        "payload": {"file_path": "/data/input.csv"},
    }
    r = client.post(TASKS, json=seed_body, headers=headers)
    assert r.status_code == 201
    data = assert_success(r.get_json())
    assert data["name"] == "Process Data" and data["description"] == "Process CSV file"
    assert data["priority"] == "high" and data["status"] == "pending"
    assert data["payload"] == {"file_path": "/data/input.csv"}
    assert data["handler"] == "echo"  # no handler called "Process Data": the default
    assert data["retry_count"] == gateway_settings.job_max_attempts - 1
    assert data["timeout"] == 3600 and data["attempts"] == 0 and data["owner_id"] == user_id
    for key in ("result", "error", "worker_id", "started_at", "completed_at", "duration"):
        assert data[key] is None
    row = job_row(db, data["id"])
    assert row["kind"] == "task" and row["priority"] == 8
    got = client.get(f"{TASKS}/{data['id']}", headers=headers)
    assert got.status_code == 200 and assert_success(got.get_json()) == data

    explicit = create_task(client, headers, handler="sleep", retry_count=0, timeout=5)
    assert explicit["handler"] == "sleep" and explicit["retry_count"] == 0
    assert explicit["priority"] == "medium" and explicit["timeout"] == 5
    assert job_row(db, explicit["id"])["max_attempts"] == 1


def test_idempotency_key_returns_the_first_task(client, alice):
    headers = {**alice[0], "Idempotency-Key": "once"}
    first = client.post(TASKS, json={"name": "a"}, headers=headers)
    again = client.post(TASKS, json={"name": "a"}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["data"]["id"] == first.get_json()["data"]["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "priority": "urgent"}, "priority"),
        ({"name": "x", "retry_count": 10}, "retry_count"),
        ({"name": "x", "retry_count": -1}, "retry_count"),
        ({"name": "x", "timeout": 0}, "timeout"),
        ({"name": "x", "payload": [1, 2]}, "payload"),
        ({"description": "no name"}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_task_bodies_are_400_in_the_envelope(client, alice, body, field):
    r = client.post(TASKS, json=body, headers=alice[0])
    error = assert_error(r, 400, "INVALID_REQUEST")
    assert field in str(error["details"])


def test_unknown_handler_is_400_listing_the_registered_ones(client, alice):
    r = client.post(TASKS, json={"name": "x", "handler": "no-such-handler"}, headers=alice[0])
    error = assert_error(r, 400, "INVALID_REQUEST")
    assert "no-such-handler" in error["message"]
    assert {"echo", "sleep", "http"} <= set(error["details"]["available"])


def test_errors_use_the_envelope_everywhere(client, alice):
    headers = alice[0]
    assert_error(client.get(TASKS), 401, "UNAUTHORIZED")
    assert_error(client.get(WORKERS), 401, "UNAUTHORIZED")
    assert_error(client.get("/workers/status"), 401, "UNAUTHORIZED")
    assert_error(client.get(TASKS, headers={"X-API-Key": "wrong"}), 401, "UNAUTHORIZED")
    error = assert_error(client.get(f"{TASKS}/not-a-uuid", headers=headers), 400, "INVALID_REQUEST")
    assert error["message"] == "Invalid task ID"
    assert error["details"] == {"field": "task_id", "reason": "Not a valid UUID"}
    assert_error(client.get(f"{TASKS}/{uuid.uuid4()}", headers=headers), 404, "NOT_FOUND")
    assert_error(client.get(f"{TASKS}/a/b/c", headers=headers), 404, "NOT_FOUND")
    assert_error(client.patch(TASKS, json={}, headers=headers), 405, "INVALID_REQUEST")
    assert_error(client.delete(f"{WORKERS}/status", headers=headers), 405, "INVALID_REQUEST")
    assert_error(client.get(f"{WORKERS}/nobody", headers=headers), 404, "NOT_FOUND")
    r = client.post(TASKS, data="{not json", content_type="application/json", headers=headers)
    assert_error(r, 400, "INVALID_REQUEST")
    reader = make_api_key(client, headers, "reader", scopes=["jobs:read"])
    assert_error(client.post(TASKS, json={"name": "x"}, headers=reader), 403, "FORBIDDEN")


def test_another_users_task_is_404_and_admins_see_all(client, admin, alice, bob):
    mine = create_task(client, alice[0])
    theirs = create_task(client, bob[0], name="Bob's")
    url = f"{TASKS}/{mine['id']}"
    assert_error(client.get(url, headers=bob[0]), 404, "NOT_FOUND")
    assert_error(client.put(url, json={"name": "x"}, headers=bob[0]), 404, "NOT_FOUND")
    assert_error(client.delete(url, headers=bob[0]), 404, "NOT_FOUND")
    assert client.get(url, headers=alice[0]).get_json()["data"]["name"] == "Process Data"
    assert client.get(url, headers=admin).status_code == 200
    listed = {t["id"] for t in client.get(TASKS, headers=bob[0]).get_json()["data"]}
    assert listed == {theirs["id"]}
    everyone = {t["id"] for t in client.get(TASKS, headers=admin).get_json()["data"]}
    assert everyone == {mine["id"], theirs["id"]}


def test_a_job_of_another_kind_is_not_a_task(client, db, alice):
    job = make_job(db, owner_id=alice[1], kind="cache")
    assert_error(client.get(f"{TASKS}/{job['id']}", headers=alice[0]), 404, "NOT_FOUND")


def test_list_pagination_filters_and_sorts(client, db, alice):
    headers = alice[0]
    made = [
        create_task(client, headers, name=f"t{i}", priority=p)
        for i, p in enumerate(["low", "medium", "high", "high", "low"])
    ]
    now = dt.datetime.now(dt.UTC)
    # t0 ran 30 s on worker-a, t1 ran 5 s on worker-b and failed, t2 runs on worker-a.
    set_columns(
        db,
        made[0]["id"],
        status="completed",
        started_at=now - dt.timedelta(seconds=40),
        completed_at=now - dt.timedelta(seconds=10),
        last_worker_id="worker-a",
    )
    set_columns(
        db,
        made[1]["id"],
        status="failed",
        started_at=now - dt.timedelta(seconds=8),
        completed_at=now - dt.timedelta(seconds=3),
        last_worker_id="worker-b",
        error="boom",
    )
    set_columns(db, made[2]["id"], status="running", started_at=now, last_worker_id="worker-a")
    set_columns(
        db,
        made[3]["id"],
        status="retrying",
        attempt=1,
        next_attempt_at=now + dt.timedelta(seconds=60),
    )

    body = client.get(f"{TASKS}?skip=0&limit=2", headers=headers).get_json()
    assert len(assert_success(body)) == 2
    assert body["pagination"] == {"skip": 0, "limit": 2, "total": 5, "pages": 3}
    assert [t["name"] for t in body["data"]] == ["t4", "t3"]  # newest first
    last = client.get(f"{TASKS}?skip=4&limit=2", headers=headers).get_json()
    assert [t["name"] for t in last["data"]] == ["t0"]
    assert last["pagination"]["total"] == 5

    def names(query: str) -> list[str]:
        r = client.get(f"{TASKS}?{query}", headers=headers)
        assert r.status_code == 200, r.get_json()
        return [t["name"] for t in r.get_json()["data"]]

    assert sorted(names("status=pending")) == ["t3", "t4"]  # retrying reads pending
    assert names("status=completed") == ["t0"] and names("status=failed") == ["t1"]
    assert names("status=running") == ["t2"] and names("status=cancelled") == []
    assert sorted(names("priority=high")) == ["t2", "t3"]
    assert sorted(names("priority=low")) == ["t0", "t4"] and names("priority=medium") == ["t1"]
    assert sorted(names("worker_id=worker-a")) == ["t0", "t2"]
    assert names("worker_id=worker-a&status=completed") == ["t0"]
    assert names("sort=created_at&order=asc") == ["t0", "t1", "t2", "t3", "t4"]
    # Duration once finished; unfinished tasks have none and come last in either order.
    assert names("sort=duration&order=desc")[:2] == ["t0", "t1"]
    assert names("sort=duration&order=asc")[:2] == ["t1", "t0"]
    assert names("sort=updated_at&order=asc") == ["t4", "t0", "t1", "t2", "t3"]

    retrying = client.get(f"{TASKS}/{made[3]['id']}", headers=headers).get_json()["data"]
    assert retrying["status"] == "pending" and retrying["next_retry_at"] is not None
    done = client.get(f"{TASKS}/{made[0]['id']}", headers=headers).get_json()["data"]
    assert done["duration"] == pytest.approx(30.0, abs=0.01) and done["worker_id"] == "worker-a"
    failed = client.get(f"{TASKS}/{made[1]['id']}", headers=headers).get_json()["data"]
    assert failed["error"] == "boom" and failed["status"] == "failed"

    for bad in (
        "limit=101",
        "limit=0",
        "skip=-1",
        "sort=name",
        "order=up",
        "status=retrying",
        "priority=urgent",
        "limit=abc",
    ):
        assert_error(client.get(f"{TASKS}?{bad}", headers=headers), 400, "INVALID_REQUEST")
    assert client.get(f"{TASKS}?limit=100", headers=headers).status_code == 200


def test_canonical_priorities_read_as_the_nearest_word(client, db, alice):
    made = create_task(client, alice[0])
    for number, word in (
        (0, "low"),
        (3, "low"),
        (4, "medium"),
        (6, "medium"),
        (7, "high"),
        (9, "high"),
    ):
        set_columns(db, made["id"], priority=number)
        data = client.get(f"{TASKS}/{made['id']}", headers=alice[0]).get_json()["data"]
        assert data["priority"] == word


def test_put_labels_any_time_and_the_rest_while_pending(client, db, alice, amqp_url):
    headers = alice[0]
    made = create_task(client, headers)
    url = f"{TASKS}/{made['id']}"
    task_messages(amqp_url)  # drop the creation's message

    r = client.put(
        url,
        json={
            "name": "Renamed",
            "description": None,
            "priority": "high",
            "retry_count": 5,
            "timeout": 60,
            "payload": {"n": 1},
            "handler": "sleep",
        },
        headers=headers,
    )
    data = assert_success(r.get_json())
    assert r.status_code == 200
    assert (data["name"], data["description"], data["priority"]) == ("Renamed", None, "high")
    assert (data["retry_count"], data["timeout"], data["payload"]) == (5, 60, {"n": 1})
    assert data["handler"] == "sleep" and data["status"] == "pending"
    row = job_row(db, made["id"])
    assert row["priority"] == 8 and row["max_attempts"] == 6 and row["params"]["timeout"] == 60
    # The priority change queued a fresh message with the new priority.
    assert [(m["job_id"], p) for m, p in task_messages(amqp_url)] == [(made["id"], 8)]
    # No new message when the priority stays.
    client.put(url, json={"priority": "high", "payload": {}}, headers=headers)
    assert task_messages(amqp_url) == []

    # handler null: chosen by the name again (none called "Renamed": the default).
    assert (
        client.put(url, json={"handler": None}, headers=headers).get_json()["data"]["handler"]
        == "echo"
    )
    error = assert_error(
        client.put(url, json={"handler": "nope"}, headers=headers), 400, "INVALID_REQUEST"
    )
    assert "echo" in error["details"]["available"]

    set_columns(db, made["id"], status="running", attempt=1, started_at=dt.datetime.now(dt.UTC))
    error = assert_error(
        client.put(url, json={"priority": "low"}, headers=headers), 409, "CONFLICT"
    )
    assert error["details"]["fields"] == ["priority"]
    for change in ({"payload": {}}, {"timeout": 5}, {"retry_count": 1}, {"handler": "echo"}):
        assert_error(client.put(url, json=change, headers=headers), 409, "CONFLICT")
    renamed = client.put(url, json={"name": "Still", "description": "d"}, headers=headers)
    assert renamed.status_code == 200 and renamed.get_json()["data"]["name"] == "Still"
    assert job_row(db, made["id"])["priority"] == 8  # the refused change left it alone

    for bad in (
        {"status": "running"},
        {"status": "completed"},
        {"status": "bogus"},
        {"priority": "urgent"},
        {"retry_count": 10},
        {"unknown": 1},
        {"name": ""},
    ):
        assert_error(client.put(url, json=bad, headers=headers), 400, "INVALID_REQUEST")


def test_put_retry_count_must_leave_an_attempt(client, db, alice):
    made = create_task(client, alice[0], retry_count=3)
    set_columns(
        db,
        made["id"],
        status="retrying",
        attempt=2,
        next_attempt_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
    )
    url = f"{TASKS}/{made['id']}"
    assert_error(client.put(url, json={"retry_count": 1}, headers=alice[0]), 409, "CONFLICT")
    r = client.put(url, json={"retry_count": 2}, headers=alice[0])
    assert r.status_code == 200 and job_row(db, made["id"])["max_attempts"] == 3


def test_put_priority_of_a_retrying_task_waits_for_its_backoff(client, db, alice, amqp_url):
    made = create_task(client, alice[0])
    task_messages(amqp_url)
    set_columns(
        db,
        made["id"],
        status="retrying",
        attempt=1,
        next_attempt_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
    )
    r = client.put(f"{TASKS}/{made['id']}", json={"priority": "low"}, headers=alice[0])
    assert r.status_code == 200 and r.get_json()["data"]["priority"] == "low"
    assert task_messages(amqp_url) == []  # on a retry queue until the backoff ends
    with db.transaction() as conn:
        queued = jobgate_db.fetch_all(conn, "SELECT * FROM outbox")
    assert queued == []  # published (to the delayed queue), not left for the relay


def test_put_status_cancels_and_runs_again(client, db, alice):
    headers = alice[0]
    made = create_task(client, headers)
    url = f"{TASKS}/{made['id']}"
    r = client.put(url, json={"status": "cancelled"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["data"]["status"] == "cancelled"
    again = client.put(url, json={"status": "cancelled"}, headers=headers)
    assert again.status_code == 200 and again.get_json()["data"]["status"] == "cancelled"
    # Back to pending, with a new payload in the same request.
    r = client.put(url, json={"status": "pending", "payload": {"again": True}}, headers=headers)
    data = assert_success(r.get_json())
    assert data["status"] == "pending" and data["payload"] == {"again": True}
    assert job_row(db, made["id"])["status"] == "pending"
    assert client.put(url, json={"status": "pending"}, headers=headers).status_code == 200

    set_columns(
        db,
        made["id"],
        status="completed",
        completed_at=dt.datetime.now(dt.UTC),
        result={"ok": [1, 2]},
    )
    assert client.get(url, headers=headers).get_json()["data"]["result"] == {"ok": [1, 2]}
    assert_error(client.put(url, json={"status": "cancelled"}, headers=headers), 409, "CONFLICT")
    assert_error(client.put(url, json={"status": "pending"}, headers=headers), 409, "CONFLICT")
    set_columns(db, made["id"], status="running", completed_at=None)
    r = client.put(url, json={"status": "cancelled"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["data"]["status"] == "running"
    assert job_row(db, made["id"])["cancel_requested"] is True  # the worker stops it


def test_put_pending_runs_a_failed_task_again_with_one_message(client, db, alice, amqp_url):
    """Run again and changed in one transaction, then ONE message with the final priority;
    the new run's `started_at` is its own (a finished run's duration is not the wait)."""
    headers = alice[0]
    made = create_task(client, headers, payload={"v": 1})
    task_messages(amqp_url)
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    set_columns(
        db,
        made["id"],
        status="failed",
        attempt=1,
        error="RuntimeError: no",
        started_at=an_hour_ago,
        completed_at=an_hour_ago + dt.timedelta(seconds=1),
    )
    r = client.put(
        f"{TASKS}/{made['id']}",
        json={"status": "pending", "priority": "high", "payload": {"v": 2}},
        headers=headers,
    )
    data = assert_success(r.get_json())
    assert (data["status"], data["priority"], data["payload"]) == ("pending", "high", {"v": 2})
    assert data["attempts"] == 0 and data["error"] is None
    assert data["started_at"] is data["completed_at"] is data["duration"] is None
    assert [(m["job_id"], p) for m, p in task_messages(amqp_url)] == [(made["id"], 8)]
    with db.transaction() as conn:
        assert jobgate_db.fetch_all(conn, "SELECT * FROM outbox") == []

    # The canonical retry starts the run's clock over too.
    set_columns(db, made["id"], status="cancelled", started_at=an_hour_ago)
    r = client.post(f"/api/v1/jobs/{made['id']}/retry", headers=headers)
    assert r.status_code == 200, r.get_json()
    assert job_row(db, made["id"])["started_at"] is None
    # A running task cannot be set back to pending; its fields stay.
    set_columns(db, made["id"], status="running", started_at=an_hour_ago)
    r = client.put(
        f"{TASKS}/{made['id']}", json={"status": "pending", "payload": {"v": 3}}, headers=headers
    )
    assert assert_error(r, 409, "CONFLICT")["details"] == {"status": "running"}
    assert job_row(db, made["id"])["params"]["payload"] == {"v": 2}


def test_delete_a_task(client, db, alice):
    made = create_task(client, alice[0])
    url = f"{TASKS}/{made['id']}"
    r = client.delete(url, headers=alice[0])
    assert r.status_code == 204 and r.data == b""
    assert job_row(db, made["id"]) is None
    assert_error(client.get(url, headers=alice[0]), 404, "NOT_FOUND")
    assert_error(client.delete(url, headers=alice[0]), 404, "NOT_FOUND")


# --- workers ----------------------------------------------------------------------------------


def beat(db, worker_id: str, kind: str = "task", status: str = "idle", **fields: Any) -> None:
    with db.transaction() as conn:
        workers.heartbeat(
            conn,
            worker_id=worker_id,
            kind=kind,
            hostname="host-1",
            pid=1234,
            status=status,
            current_job_id=None,
            **fields,
        )


def age(db, worker_id: str, seconds: float) -> None:
    with db.transaction() as conn:
        jobgate_db.execute(
            conn,
            "UPDATE workers SET last_heartbeat_at = now() - make_interval(secs => %s),"
            " started_at = now() - make_interval(secs => %s) WHERE id = %s",
            (seconds, seconds, worker_id),
        )


def test_workers_list_and_get(client, db, alice):
    headers = alice[0]
    beat(db, "task-host-1-1-aaaaaa", current_load=2, max_capacity=4, status="busy")
    beat(db, "cache-host-1-2-bbbbbb", kind="cache")
    beat(db, "convert-host-1-3-cccccc", kind="convert", status="stopped")
    beat(db, "scrape-host-1-4-dddddd", kind="scrape")
    age(db, "scrape-host-1-4-dddddd", 120)  # silent: inactive

    body = client.get(WORKERS, headers=headers).get_json()
    listed = {w["worker_id"]: w for w in assert_success(body)}
    assert body["pagination"] == {"skip": 0, "limit": 50, "total": 4, "pages": 1}
    first = listed["task-host-1-1-aaaaaa"]
    assert first["status"] == "active" and first["active"] is True and first["state"] == "busy"
    assert (first["kind"], first["hostname"], first["pid"]) == ("task", "host-1", 1234)
    assert (first["current_load"], first["max_capacity"]) == (2, 4)
    assert first["external"] is False and first["jobs_completed"] == 0
    assert listed["convert-host-1-3-cccccc"]["status"] == "inactive"
    assert listed["scrape-host-1-4-dddddd"]["status"] == "inactive"

    def ids(query: str) -> set[str]:
        return {
            w["worker_id"] for w in client.get(f"{WORKERS}?{query}", headers=headers).json["data"]
        }

    assert ids("status=active") == {"task-host-1-1-aaaaaa", "cache-host-1-2-bbbbbb"}
    assert ids("status=inactive") == {"convert-host-1-3-cccccc", "scrape-host-1-4-dddddd"}
    page = client.get(f"{WORKERS}?limit=3&skip=3", headers=headers).get_json()
    assert len(page["data"]) == 1 and page["pagination"]["pages"] == 2
    for bad in ("status=busy", "limit=101", "skip=-1"):
        assert_error(client.get(f"{WORKERS}?{bad}", headers=headers), 400, "INVALID_REQUEST")

    one = client.get(f"{WORKERS}/task-host-1-1-aaaaaa", headers=headers)
    assert assert_success(one.get_json()) == first
    assert_error(client.get(f"{WORKERS}/worker-001", headers=headers), 404, "NOT_FOUND")
    nobody = make_api_key(client, headers, "nobody", scopes=["jobs:write"])
    assert_error(client.get(WORKERS, headers=nobody), 403, "FORBIDDEN")


def test_heartbeat_registers_external_workers(client, db, admin, alice):
    writer, _ = make_login(client, admin, "writer", ["jobs:read", "workers:write"])
    other, _ = make_login(client, admin, "other", ["jobs:read", "workers:write"])
    seed_body = {
        "worker_id": "worker-001",
        "status": "active",
        "current_load": 5,
        "max_capacity": 10,
    }
    url = f"{WORKERS}/heartbeat"
    assert_error(client.post(url, json=seed_body, headers=alice[0]), 403, "FORBIDDEN")
    assert_error(client.post(url, json=seed_body), 401, "UNAUTHORIZED")

    r = client.post(url, json=seed_body, headers=writer)
    data = assert_success(r.get_json())
    assert r.status_code == 200
    assert data["worker_id"] == "worker-001" and data["external"] is True
    assert data["status"] == "active" and data["kind"] == "external"
    assert (data["current_load"], data["max_capacity"]) == (5, 10)
    assert data["hostname"] is None and data["pid"] is None

    busy = client.post(url, json={**seed_body, "status": "busy", "current_load": 9}, headers=writer)
    assert busy.get_json()["data"]["state"] == "busy"
    assert busy.get_json()["data"]["current_load"] == 9
    gone = client.post(url, json={**seed_body, "status": "inactive"}, headers=writer)
    assert gone.get_json()["data"]["status"] == "inactive"
    listed = client.get(f"{WORKERS}/worker-001", headers=writer).get_json()["data"]
    assert listed["state"] == "inactive" and listed["active"] is False

    # Someone else's worker, or one of Jobgate's: taken.
    error = assert_error(client.post(url, json=seed_body, headers=other), 409, "CONFLICT")
    assert error["details"] == {"worker_id": "worker-001"}
    beat(db, "task-host-1-1-aaaaaa")
    taken = {**seed_body, "worker_id": "task-host-1-1-aaaaaa"}
    assert_error(client.post(url, json=taken, headers=admin), 409, "CONFLICT")
    with db.transaction() as conn:
        row = workers.get_worker(conn, worker_id="task-host-1-1-aaaaaa")
    assert row["external"] is False and row["hostname"] == "host-1"

    # An admin may register without the scope; an API key needs it.
    assert (
        client.post(url, json={**seed_body, "worker_id": "w-2"}, headers=admin).status_code == 200
    )
    key = make_api_key(client, writer, "beats", scopes=["workers:write"])
    assert client.post(url, json={**seed_body, "worker_id": "w-3"}, headers=key).status_code == 200
    plain_key = make_api_key(client, writer, "reads", scopes=["jobs:read"])
    assert_error(
        client.post(url, json={**seed_body, "worker_id": "w-4"}, headers=plain_key),
        403,
        "FORBIDDEN",
    )

    for bad in (
        {"status": "active"},
        {**seed_body, "status": "sleeping"},
        {**seed_body, "current_load": -1},
        {**seed_body, "worker_id": "a b"},
        {**seed_body, "worker_id": ""},
        {**seed_body, "extra": 1},
    ):
        assert_error(client.post(url, json=bad, headers=writer), 400, "INVALID_REQUEST")


def test_workers_status_at_both_paths(client, db, alice):
    beat(db, "task-host-1-1-aaaaaa", current_load=1, max_capacity=4, status="busy")
    beat(db, "task-host-1-2-bbbbbb", max_capacity=4)
    beat(db, "scheduler-host-1-5", kind="scheduler")
    beat(db, "cache-host-1-3-cccccc", kind="cache", status="stopped")
    answers = [
        client.get(path, headers=alice[0]) for path in ("/workers/status", f"{WORKERS}/status")
    ]
    for r in answers:
        data = assert_success(r.get_json())
        assert data["healthy"] is True
        assert (data["total"], data["active"], data["inactive"]) == (4, 3, 1)
        assert (data["current_load"], data["max_capacity"]) == (1, 9)
        assert data["by_kind"]["task"] == {"total": 2, "active": 2, "busy": 1}
        assert data["by_kind"]["cache"] == {"total": 1, "active": 0, "busy": 0}
        states = {w["worker_id"]: w for w in data["workers"]}
        assert states["cache-host-1-3-cccccc"]["status"] == "inactive"
        assert states["task-host-1-1-aaaaaa"]["state"] == "busy"
    assert answers[0].get_json()["data"] == answers[1].get_json()["data"]


def test_prune_drops_workers_silent_for_a_week(db):
    beat(db, "fresh")
    beat(db, "old-stopped", status="stopped")
    beat(db, "old-silent")
    age(db, "old-stopped", 8 * 86400)
    age(db, "old-silent", 8 * 86400)
    beat(db, "stopped-yesterday", status="stopped")
    age(db, "stopped-yesterday", 86400)
    with db.transaction() as conn:
        assert workers.prune(conn) == 2
        left = {r["id"] for r in workers.all_workers(conn)}
    assert left == {"fresh", "stopped-yesterday"}


# --- health, info, login, limits --------------------------------------------------------------


def test_health_ready_and_info_serve_every_seeds_fields(client):
    health = client.get("/health").get_json()
    assert health["status"] in ("healthy", "degraded")  # seed 001's `degraded`: no converter
    assert health["version"] and health["timestamp"].endswith("Z")
    assert {"auth", "converter", "rabbitmq", "database"} <= set(health["services"])
    ready = client.get("/ready")
    body = ready.get_json()
    assert ready.status_code == 200 and body["status"] == "ready" and body["ready"] is True
    assert body["version"] and body["timestamp"].endswith("Z")
    assert body["database"] == body["broker"] == "connected"
    info = client.get("/info").get_json()
    assert info["name"] == "Jobgate" and info["version"]
    assert info["environment"] == "test" and info["debug"] is False
    assert "task" in info["job_kinds"]
    # Webhook deliveries are jobs the platform makes: not a kind a client can submit.
    assert "task" in info["supported_kinds"] and "webhook" not in info["supported_kinds"]


def test_ready_says_not_ready_when_the_broker_is_down(gateway_settings):
    app = create_app(gateway_settings.replace(amqp_url="amqp://guest:guest@127.0.0.1:9/%2F"))
    r = app.test_client().get("/ready")
    assert r.status_code == 503
    assert r.get_json()["status"] == "not_ready" and r.get_json()["broker"] == "disconnected"


def test_login_answers_token_as_seed_004_reads_it(client):
    from tests.integration.conftest import ADMIN_PASSWORD

    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    body = r.get_json()
    assert r.status_code == 200 and body["token"] == body["access_token"]
    assert (
        client.get(TASKS, headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
    )
    spec = client.get("/openapi.json").get_json()
    assert "token" in spec["components"]["schemas"]["TokenResponse"]["properties"]


def rate_headers(response) -> tuple[int, int, int]:
    limit = int(response.headers["X-RateLimit-Limit"])
    remaining = int(response.headers["X-RateLimit-Remaining"])
    reset = int(response.headers["X-RateLimit-Reset"])
    assert 0 <= remaining <= limit and reset >= time.time() - 1
    return limit, remaining, reset


def test_rate_limit_headers_on_every_authenticated_response(client, alice, gateway_settings):
    headers = alice[0]
    made = create_task(client, headers)
    answers = {
        "tasks list": client.get(TASKS, headers=headers),
        "task": client.get(f"{TASKS}/{made['id']}", headers=headers),
        "task 404": client.get(f"{TASKS}/{uuid.uuid4()}", headers=headers),
        "task 400": client.get(f"{TASKS}?limit=1000", headers=headers),
        "workers": client.get(WORKERS, headers=headers),
        "workers status": client.get("/workers/status", headers=headers),
        "jobs": client.get("/api/v1/jobs", headers=headers),
        "job 404": client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=headers),
        "schedules": client.get("/api/v1/schedules", headers=headers),
        "me": client.get("/api/v1/auth/me", headers=headers),
        "file": client.get(f"/api/v1/files/{uuid.uuid4()}", headers=headers),
        "unknown route": client.get("/api/v1/nothing-here", headers=headers),
        "seed 000": client.get("/api/v1/cache/jobs", headers=DEMO),
        # Refused by validation before the route's own limit was checked: the default's.
        "seed 003 400": client.get(f"/api/jobs/{uuid.uuid4()}/logs?after_id=-1", headers=DEMO),
    }
    for name, response in answers.items():
        assert "X-RateLimit-Limit" in response.headers, name
        rate_headers(response)
        # Retry-After only where it means something (429, 503), never on a success.
        assert "Retry-After" not in response.headers, name
    # Tasks report the seed's windows (the minute one: nearest to running out).
    assert rate_headers(answers["tasks list"])[0] == 100
    assert rate_headers(answers["jobs"])[0] == int(gateway_settings.rate_limit_status.split("/")[0])
    # Unauthenticated public routes stay without them.
    assert "X-RateLimit-Limit" not in client.get("/health").headers


def test_tasks_have_their_own_two_windows(gateway_settings):
    app = create_app(gateway_settings.replace(rate_limit_tasks="5/hour;3/minute"))
    client = app.test_client()
    headers = {"X-API-Key": DEMO["X-API-Key"]}
    seen = [client.get(TASKS, headers=headers) for _ in range(3)]
    assert [rate_headers(r)[:2] for r in seen] == [(3, 2), (3, 1), (3, 0)]
    refused = client.post(TASKS, json={"name": "x"}, headers=headers)
    assert_error(refused, 429, "RATE_LIMITED")
    assert (
        refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) > 0
    )
    # Other routes are not in the tasks' bucket.
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    assert client.get(WORKERS, headers=headers).status_code == 200


def test_seed004_operations_document_the_envelope(client):
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["EnvelopeError"]["properties"]) == {"status", "error", "timestamp"}
    ops = [
        spec["paths"][TASKS]["get"],
        spec["paths"][TASKS]["post"],
        spec["paths"]["/api/v1/tasks/{task_id}"]["put"],
        spec["paths"]["/workers/status"]["get"],
        spec["paths"][f"{WORKERS}/heartbeat"]["post"],
    ]
    for op in ops:
        errors = {
            code: r for code, r in op["responses"].items() if code == "default" or int(code) >= 400
        }
        assert errors
        for response in errors.values():
            ref = response["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/EnvelopeError")
    listed = schemas["Seed004TaskList"]["properties"]
    assert set(listed) == {"status", "data", "pagination", "timestamp"}
    assert set(schemas["Seed004Task"]["properties"]) >= {
        "id",
        "name",
        "status",
        "priority",
        "result",
        "worker_id",
        "duration",
        "next_retry_at",
    }
    assert set(STATUSES) >= set(schemas["Seed004Task"]["properties"]["status"]["enum"])


# --- with a task worker -----------------------------------------------------------------------


def test_create_and_monitor_task_with_a_real_worker(client, start_worker, alice):
    """The seed's "Create and Monitor Task" example, polling as its loop does."""
    start_worker("task", task_concurrency=1)
    headers = alice[0]
    r = client.post(TASKS, json={"name": "Data Processing", "priority": "high"}, headers=headers)
    task_id = r.get_json()["data"]["id"]
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        data = client.get(f"{TASKS}/{task_id}", headers=headers).get_json()["data"]
        seen.append(data["status"])
        if data["status"] in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert data["status"] == "completed", (seen, data)
    assert data["result"] == {} and data["error"] is None  # echo of an empty payload
    assert data["attempts"] == 1 and data["worker_id"].startswith("task-")
    assert data["duration"] is not None and data["started_at"] and data["completed_at"]
    # The worker it ran on is in the workers API, and the filter finds the task by it.
    worker = client.get(f"{WORKERS}/{data['worker_id']}", headers=headers).get_json()["data"]
    assert worker["kind"] == "task" and worker["status"] == "active"
    listed = client.get(f"{TASKS}?worker_id={data['worker_id']}", headers=headers).get_json()
    assert [t["id"] for t in listed["data"]] == [task_id]
