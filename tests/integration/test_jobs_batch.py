"""`POST /api/v1/jobs/batch`: many jobs of any kinds in one transaction, all or nothing,
with per-item idempotency keys; each new job is published like a single submission."""

from __future__ import annotations

import json
from typing import Any

import pika
import pytest

from jobgate import db as jobgate_db
from jobgate import kinds
from tests.integration.conftest import DEMO, make_login

pytestmark = pytest.mark.usefixtures("filespace")

BATCH = "/api/v1/jobs/batch"
CACHE = {"kind": "cache", "files": ["00_Media/video.mp4"]}
TASK = {"kind": "task", "name": "batched", "handler": "echo", "payload": {"n": 1}}


def job_count(db) -> int:
    with db.transaction() as conn:
        return int(jobgate_db.fetch_one(conn, "SELECT count(*) AS n FROM jobs")["n"])


def queued(amqp_url: str, kind: str) -> list[dict[str, Any]]:
    """The message bodies waiting on a kind's queue, taken off it."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    found = []
    try:
        channel = conn.channel()
        while True:
            method, _props, body = channel.basic_get(kinds.get(kind).queue_name, auto_ack=True)
            if method is None:
                return found
            found.append(json.loads(body))
    finally:
        conn.close()


def test_mixed_kinds_are_created_in_order_and_published(client, db, amqp_url):
    body = {"jobs": [CACHE, TASK, {**CACHE, "priority": 9, "max_attempts": 2}, TASK]}
    r = client.post(BATCH, json=body, headers=DEMO)
    assert r.status_code == 201, r.json
    assert r.json["created"] == 4
    listed = r.json["jobs"]
    assert [j["kind"] for j in listed] == ["cache", "task", "cache", "task"]
    assert all(j["created"] is True and j["status"] == "pending" for j in listed)
    assert len({j["id"] for j in listed}) == 4
    assert listed[0]["progress_detail"]["items_total"] == 1  # the cache plan ran: one item
    assert listed[2]["priority"] == 9 and listed[2]["max_attempts"] == 2
    assert listed[1]["params"]["handler"] == "echo" and listed[1]["name"] == "batched"
    # Each job reads back as a single submission's does, with its items stored; the batch
    # answers each job exactly as GET does (the answer skips the schema's dump).
    got = client.get(f"/api/v1/jobs/{listed[0]['id']}", headers=DEMO).json["job"]
    assert got["progress_detail"]["bytes_total"] == 5000
    for answered in listed:
        read = client.get(f"/api/v1/jobs/{answered['id']}", headers=DEMO).json["job"]
        assert {**read, "created": True} == answered
    with db.transaction() as conn:
        items = jobgate_db.fetch_all(
            conn, "SELECT key FROM job_items WHERE job_id = %s", (listed[2]["id"],)
        )
        left = jobgate_db.fetch_all(conn, "SELECT id FROM outbox")
    assert [i["key"] for i in items] == ["00_Media/video.mp4"]
    assert left == []  # published after commit, nothing left for the relay
    cache_ids = {m["job_id"] for m in queued(amqp_url, "cache")}
    task_ids = {m["job_id"] for m in queued(amqp_url, "task")}
    assert cache_ids == {listed[0]["id"], listed[2]["id"]}
    assert task_ids == {listed[1]["id"], listed[3]["id"]}


def test_one_bad_item_fails_the_whole_batch_and_writes_nothing(client, db, amqp_url):
    body = {
        "jobs": [
            CACHE,
            {"kind": "cache", "files": ["00_Media/nope.mp4"]},
            {**TASK, "priority": 42},
            {"kind": "teleport"},
            {"kind": "webhook"},
            TASK,
        ]
    }
    r = client.post(BATCH, json=body, headers=DEMO)
    assert r.status_code == 400, r.json
    errors = r.json["error"]["details"]["items"]
    assert set(errors) == {"1", "2", "3", "4"}
    assert "priority" in errors["2"]["fields"]
    assert "teleport" in errors["3"]["message"] and "webhook" in errors["4"]["message"]
    assert job_count(db) == 0
    assert queued(amqp_url, "cache") == [] and queued(amqp_url, "task") == []


@pytest.mark.parametrize(
    "body",
    [{}, {"jobs": []}, {"jobs": [CACHE] * 1001}, {"jobs": "cache"}, {"jobs": [["cache"]]}],
)
def test_size_limits_and_malformed_bodies_are_400(client, db, body):
    r = client.post(BATCH, json=body, headers=DEMO)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "INVALID_REQUEST"
    assert job_count(db) == 0


def test_a_thousand_jobs_in_one_batch(client, db):
    r = client.post(BATCH, json={"jobs": [TASK] * 1000}, headers=DEMO)
    assert r.status_code == 201
    assert r.json["created"] == 1000 and len({j["id"] for j in r.json["jobs"]}) == 1000
    assert job_count(db) == 1000


def test_item_keys_replay_the_first_jobs_and_conflict_on_a_changed_body(client, db):
    body = {"jobs": [{**CACHE, "idempotency_key": "a"}, TASK, {**TASK, "idempotency_key": "b"}]}
    first = client.post(BATCH, json=body, headers=DEMO)
    assert first.status_code == 201 and first.json["created"] == 3
    again = client.post(BATCH, json=body, headers=DEMO)
    assert again.status_code == 201 and again.json["created"] == 1  # the keyless task is new
    ids = [j["id"] for j in first.json["jobs"]]
    again_ids = [j["id"] for j in again.json["jobs"]]
    assert again_ids[0] == ids[0] and again_ids[2] == ids[2] and again_ids[1] != ids[1]
    assert [j["created"] for j in again.json["jobs"]] == [False, True, False]
    # A key used by a single submission answers the batch item too.
    single = client.post(
        "/api/v1/jobs", json=TASK, headers={**DEMO, "Idempotency-Key": "from-single"}
    )
    mixed = client.post(
        BATCH, json={"jobs": [{**TASK, "idempotency_key": "from-single"}]}, headers=DEMO
    )
    assert mixed.json["jobs"][0]["id"] == single.json["id"]
    assert job_count(db) == 5
    changed = {"jobs": [TASK, {**TASK, "payload": {"n": 2}, "idempotency_key": "b"}]}
    r = client.post(BATCH, json=changed, headers=DEMO)
    assert r.status_code == 409, r.json
    assert r.json["error"]["details"] == {"index": 1, "job_id": ids[2]}
    assert job_count(db) == 5  # the keyless task of the refused batch was not written


def test_duplicate_keys_within_a_batch_are_400(client, db):
    body = {"jobs": [{**TASK, "idempotency_key": "x"}, CACHE, {**CACHE, "idempotency_key": "x"}]}
    r = client.post(BATCH, json=body, headers=DEMO)
    assert r.status_code == 400
    assert set(r.json["error"]["details"]["items"]) == {"2"}
    r = client.post(BATCH, json={"jobs": [{**TASK, "idempotency_key": "é"}]}, headers=DEMO)
    assert r.status_code == 400 and "idempotency_key" in str(r.json["error"]["details"])
    assert job_count(db) == 0


def test_keys_are_per_owner(client, admin):
    alice, alice_id = make_login(client, admin, "alice", ["jobs:read", "jobs:write"])
    bob, bob_id = make_login(client, admin, "bob", ["jobs:read", "jobs:write"])
    body = {"jobs": [{**TASK, "idempotency_key": "shared"}]}
    a = client.post(BATCH, json=body, headers=alice)
    b = client.post(BATCH, json=body, headers=bob)
    assert a.status_code == b.status_code == 201 and b.json["created"] == 1
    assert a.json["jobs"][0]["owner_id"] == alice_id and b.json["jobs"][0]["owner_id"] == bob_id
    assert a.json["jobs"][0]["id"] != b.json["jobs"][0]["id"]


def test_auth_and_scope(client, admin, db):
    body = {"jobs": [TASK]}
    assert client.post(BATCH, json=body).status_code == 401
    reader, _ = make_login(client, admin, "reader", ["jobs:read"])
    assert client.post(BATCH, json=body, headers=reader).status_code == 403
    # Containers need their own scope: the whole batch is refused, naming the item.
    writer, _ = make_login(client, admin, "writer", ["jobs:read", "jobs:write"])
    r = client.post(
        BATCH, json={"jobs": [TASK, {"kind": "container", "image": "alpine:3"}]}, headers=writer
    )
    assert r.status_code == 403 and r.json["error"]["details"]["index"] == 1
    assert job_count(db) == 0
