"""`GET /api/v1/jobs` and `GET /api/v1/jobs/{id}` send `job_to_dict`'s objects as they are
(issue 13: no second marshmallow dump): the answer must be exactly what dumping it through
the documented schemas (`JobSchema`, `JobDetailSchema`) gives, for jobs of every kind and
state, so no field leaks, goes missing or changes type."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from psycopg2.extras import Json

from jobgate import kinds
from jobgate_gateway.jobs.schemas import JobDetailSchema, JobSchema
from tests.integration.conftest import DEMO

# Per kind: params as the kind stores them, and `details` (what a worker records).
PARAMS = {
    "task": {"name": "bench.noop", "payload": {"n": 1}},
    "cache": {"files": ["proj/a.mov"], "directories": []},
    "convert": {"input_file": str(uuid.UUID(int=1)), "bitrate": "192k"},
    "scrape": {"mode": "profile", "value": "someone", "limit": 10, "no_watermark": True},
    "container": {"image": "busybox", "name": "c1", "command": ["true"]},
    "webhook": {"webhook_id": str(uuid.UUID(int=2)), "event_type": "job.completed"},
}
DETAILS = {
    "container": {
        "container_id": "abc123",
        "exit_code": 0,
        "resource_usage": {"cpu_time": 1.5, "memory_peak": 1024, "network_io": 7},
    }
}


def states(now: dt.datetime) -> tuple[tuple[str, dict], ...]:
    """(status, extra columns): fresh throughput, progress, an error, a result, a retry."""
    return (
        ("pending", {}),
        (
            "running",
            {
                "items_total": 3,
                "items_done": 1,
                "bytes_total": 3000,
                "bytes_done": 1001,
                "current_item": "proj/a.mov",
                "throughput_bps": 1234.5,
                "throughput_at": now,
                "started_at": now,
            },
        ),
        ("retrying", {"attempt": 1, "next_attempt_at": now, "error": "boom"}),
        (
            "completed",
            {
                "items_total": 2,
                "items_done": 2,
                "result": Json({"ok": True, "n": [1, 2.5]}),
                "request_id": "req-1",
            },
        ),
        ("failed", {"items_total": 2, "items_failed": 1, "error": "one file failed"}),
        ("cancelled", {"cancel_requested": True}),
    )


def insert_every_kind(db, owner: str) -> list[str]:
    ids = []
    with db.transaction() as conn, conn.cursor() as cur:
        for kind in PARAMS:
            assert kinds.get(kind)  # every kind the platform has is covered
            for status, extra in states(dt.datetime.now(dt.UTC)):
                job_id = str(uuid.uuid4())
                columns = {
                    "id": job_id,
                    "kind": kind,
                    "owner_id": owner,
                    "status": status,
                    "params": Json(PARAMS[kind]),
                    "details": Json(DETAILS.get(kind, {})),
                    **extra,
                }
                cur.execute(
                    f"INSERT INTO jobs ({', '.join(columns)})"
                    f" VALUES ({', '.join(['%s'] * len(columns))})",
                    list(columns.values()),
                )
                if status == "failed":
                    cur.execute(
                        "INSERT INTO job_items (job_id, seq, key, size, status, error)"
                        " VALUES (%s, 0, 'proj/b.mov', 10, 'failed', 'unreadable')",
                        (job_id,),
                    )
                ids.append(job_id)
    return ids


def same_json(answer, dumped) -> None:
    """Equal as JSON text (so 5 and 5.0, or a number and its string, differ)."""
    assert json.dumps(answer, sort_keys=True) == json.dumps(dumped, sort_keys=True)


def test_every_kind_covered():
    assert set(PARAMS) == set(kinds.names())


def test_list_answer_is_the_schema_dump(client, db):
    owner = client.get("/api/v1/auth/me", headers=DEMO).json["id"]
    ids = insert_every_kind(db, owner)
    listed = []
    for kind in PARAMS:  # by kind: internal kinds are listed only when asked for
        r = client.get(f"/api/v1/jobs?kind={kind}&limit=500", headers=DEMO)
        assert r.status_code == 200, r.json
        assert r.headers["X-Total-Count"] == str(len(states(dt.datetime.now(dt.UTC))))
        listed += r.json
    assert sorted(j["id"] for j in listed) == sorted(ids)
    same_json(listed, JobSchema(many=True).dump(listed))
    fresh = [j for j in listed if j["status"] == "running"]
    assert fresh and all(j["throughput"] is not None for j in fresh)


def test_job_read_is_the_schema_dump(client, db):
    owner = client.get("/api/v1/auth/me", headers=DEMO).json["id"]
    for job_id in insert_every_kind(db, owner):
        r = client.get(f"/api/v1/jobs/{job_id}", headers=DEMO)
        assert r.status_code == 200, r.json
        same_json(r.json, JobDetailSchema().dump(r.json))
        if r.json["job"]["status"] == "failed":
            assert r.json["job"]["failures"] == [{"path": "proj/b.mov", "error": "unreadable"}]


def test_the_openapi_document_keeps_the_response_schemas(client):
    paths = client.get("/openapi.json").json["paths"]
    listed = paths["/api/v1/jobs"]["get"]["responses"]["200"]
    assert listed["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Job"},
    }
    assert {"X-Total-Count", "X-Next-Cursor", "Link"} <= set(listed["headers"])
    one = paths["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    assert one["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobDetail"
    }
