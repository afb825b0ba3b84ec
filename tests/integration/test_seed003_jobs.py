"""Seed 003's `/api/jobs` (container jobs) through the gateway, without a worker: job rows
are moved to each state with the factories, as a container worker would leave them."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from typing import Any

import pytest

from jobgate import db as jobgate_db
from jobgate import files, workers
from jobgate.jobs import estimates, job_logs
from jobgate.kinds import container
from jobgate_gateway import create_app
from tests.factories.files import make_output
from tests.factories.jobs import container_params, make_job, set_job_columns
from tests.helpers import create_user
from tests.integration.conftest import DEMO, login

SEED_BODY: dict[str, Any] = {
    "name": "data-processing-job",
    "image": "python:3.11-slim",
    "command": ["python", "process.py"],
    "environment": {"INPUT_FILE": "/input/data.csv", "OUTPUT_DIR": "/output"},
    "output_patterns": ["/output/*.json", "/output/report.pdf"],
    "resources": {"cpu_limit": "1.0", "memory_limit": "1g", "timeout": "3600s"},
    "priority": "high",
    "retry_policy": {"max_attempts": 4, "backoff": "fixed"},
}

needs_files_by_path = pytest.mark.skipif(
    not hasattr(files, "file_at_path"),
    reason="jobgate.files.file_at_path (files by path, migration 0006) is not there yet",
)


def make_login(client, admin, name: str, scopes: list[str]) -> tuple[dict[str, str], str]:
    """A user with `scopes`, logged in: (bearer headers, user id)."""
    password = f"password-{name}"
    user = create_user(
        client,
        admin,
        url="/api/v1/auth/users",
        username=name,
        password=password,
        scopes=scopes,
    )
    return login(client, name, password), str(user["id"])


@pytest.fixture
def alice(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "alice", ["jobs:read", "jobs:write", "containers"])


@pytest.fixture
def bob(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "bob", ["jobs:read", "jobs:write", "containers"])


@pytest.fixture
def details_column(db) -> None:
    """Tests that set `jobs.details` need migration 0007."""
    with db.transaction() as conn:
        found = jobgate_db.fetch_one(
            conn,
            "SELECT 1 AS x FROM information_schema.columns"
            " WHERE table_name = 'jobs' AND column_name = 'details'",
        )
    if found is None:
        pytest.skip("jobs.details (migration 0007) is not there yet")


def container_job(db, owner_id: str, **columns: Any) -> dict[str, Any]:
    """A container job row (busybox), moved to `columns` (status, started_at, ...)."""
    priority = columns.pop("priority", 5)
    params = columns.pop("params", None) or container_params(name="job")
    job = make_job(db, owner_id=owner_id, kind="container", params=params, priority=priority)
    return set_job_columns(db, job, **columns) if columns else job


def store_output(db, storage, tmp_path, job: dict[str, Any], name: str, data: bytes) -> dict:
    """An output file as the container worker records it: `files` row, role output, named
    by its container path without the first `/`."""
    path = tmp_path / f"out-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return make_output(db, storage, job, path, filename=name, content_type="application/json")


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- submission --------------------------------------------------------------------------------


def test_submit_answers_the_seed_fields_and_records_the_options(client, alice, db):
    headers, user_id = alice
    r = client.post("/api/jobs", json=SEED_BODY, headers=headers)
    assert r.status_code == 201, r.json
    assert set(r.json) == {"job_id", "status", "created_at", "estimated_start"}
    assert r.json["status"] == "queued" and r.json["created_at"].endswith("Z")
    assert _ts(r.json["estimated_start"]) >= _ts(r.json["created_at"])
    with db.transaction() as conn:
        row = jobgate_db.fetch_one(conn, "SELECT * FROM jobs WHERE id = %s", (r.json["job_id"],))
    assert row["kind"] == "container" and str(row["owner_id"]) == user_id
    assert row["priority"] == container.PRIORITIES["high"] and row["max_attempts"] == 4
    assert row["backoff"] == "fixed"
    params = row["params"]
    assert params["image"] == "python:3.11-slim" and params["command"] == ["python", "process.py"]
    assert params["resources"] == {"cpu_limit": "1.0", "memory_limit": "1g", "timeout": "3600s"}
    assert params["output_patterns"] == ["/output/*.json", "/output/report.pdf"]
    assert params["environment"]["OUTPUT_DIR"] == "/output" and params["name"] == SEED_BODY["name"]
    assert "priority" not in params and "retry_policy" not in params
    container.SPEC.load_params(params)  # what the worker will load

    got = client.get(f"/api/jobs/{r.json['job_id']}", headers=headers).json
    assert got["status"] == "queued" and got["priority"] == "high" and got["progress"] == 0
    assert got["retry_policy"] == {"max_attempts": 4, "backoff": "fixed"}
    assert got["output_files"] == [] and got["container_id"] is None


def test_defaults_linear_backoff_and_idempotency(client, alice, db):
    headers, _ = alice
    body = {"image": "busybox", "retry_policy": {"backoff": "linear"}}
    key = {**headers, "Idempotency-Key": "seed003-once"}
    r = client.post("/api/jobs", json=body, headers=key)
    assert r.status_code == 201, r.json
    again = client.post("/api/jobs", json=body, headers=key)
    assert again.status_code == 200 and again.json["job_id"] == r.json["job_id"]
    with db.transaction() as conn:
        row = jobgate_db.fetch_one(conn, "SELECT * FROM jobs WHERE id = %s", (r.json["job_id"],))
    assert row["priority"] == container.PRIORITIES["normal"] and row["backoff"] == "exponential"
    assert row["max_attempts"] == 3  # the platform's default


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": "Not An Image!"}, "image"),
        (
            {"input_files": [{"source": "/uploads/a.csv", "destination": "input/a.csv"}]},
            "input_files",
        ),
        ({"resources": {"memory_limit": "1k"}}, "resources"),
        ({"resources": {"timeout": "soon"}}, "resources"),
        ({"priority": "urgent"}, "priority"),
        ({"retry_policy": {"max_attempts": 0}}, "retry_policy"),
        ({"retry_policy": {"max_attempts": 11}}, "retry_policy"),
        ({"retry_policy": {"backoff": "random"}}, "retry_policy"),
        ({"environment": {"1BAD": "x"}}, "environment"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(client, alice, db, change, field):
    headers, _ = alice
    r = client.post("/api/jobs", json={**SEED_BODY, **change}, headers=headers)
    assert r.status_code == 400, r.json
    error = r.json["error"]
    assert error["code"] == "INVALID_REQUEST" and error["request_id"]
    assert field in str(error["details"]), error
    with db.transaction() as conn:
        assert jobgate_db.fetch_one(conn, "SELECT count(*) AS n FROM jobs")["n"] == 0


def test_missing_body_and_not_json_are_400(client, alice):
    headers, _ = alice
    r = client.post("/api/jobs", json={}, headers=headers)
    assert r.status_code == 400 and "image" in str(r.json["error"]["details"])
    r = client.post("/api/jobs", data="nope", content_type="text/plain", headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"


def test_credentials_and_the_containers_scope(client, admin):
    r = client.post("/api/jobs", json={"image": "Not An Image!"})
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHORIZED"
    assert client.get("/api/jobs").status_code == 401
    plain, _ = make_login(client, admin, "carol", ["jobs:read", "jobs:write"])
    r = client.post("/api/jobs", json=SEED_BODY, headers=plain)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert "containers" in r.json["error"]["message"] and r.json["error"]["request_id"]
    assert client.get("/api/jobs", headers=plain).status_code == 403
    # the canonical route asks the same of a container job
    r = client.post("/api/v1/jobs", json={"kind": "container", "image": "busybox"}, headers=plain)
    assert r.status_code == 403
    # admins hold every scope
    assert client.post("/api/jobs", json=SEED_BODY, headers=admin).status_code == 201


def test_image_allowlist_is_403(gateway_settings, alice):
    app = create_app(gateway_settings.replace(container_image_allowlist=("busybox*", "alpine:3*")))
    try:
        client = app.test_client()
        headers, _ = alice
        r = client.post("/api/jobs", json=SEED_BODY, headers=headers)
        assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
        assert r.json["error"]["details"] == {
            "image": "python:3.11-slim",
            "allowed": ["busybox*", "alpine:3*"],
        }
        for image in ("busybox", "busybox:1.36", "alpine:3.19"):
            r = client.post("/api/jobs", json={"image": image}, headers=headers)
            assert r.status_code == 201, (image, r.json)
        assert (
            client.post("/api/jobs", json={"image": "alpine"}, headers=headers).status_code == 403
        )
    finally:
        app.extensions["jobgate"].publisher.close()


def test_canonical_route_takes_container_jobs(client, alice):
    headers, _ = alice
    body = {"kind": "container", "image": "busybox", "command": ["echo", "hi"], "priority": 7}
    r = client.post("/api/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.json
    job = r.json
    assert job["kind"] == "container" and job["image"] == "busybox" and job["priority"] == 7
    assert job["resource_usage"] == {"cpu_time": 0.0, "memory_peak": 0, "network_io": 0}
    assert client.get(f"/api/jobs/{job['id']}", headers=headers).json["priority"] == "high"
    r = client.post("/api/v1/jobs", json={**body, "max_attempts": 12}, headers=headers)
    assert r.status_code == 400 and "max_attempts" in r.json["error"]["details"]["fields"]


def test_openapi_documents_the_routes_and_the_kind(client):
    doc = client.get("/openapi.json").json
    paths = doc["paths"]
    for path, methods in {
        "/api/jobs": {"get", "post"},
        "/api/jobs/{job_id}": {"get"},
        "/api/jobs/{job_id}/cancel": {"post"},
        "/api/jobs/{job_id}/retry": {"post"},
        "/api/jobs/{job_id}/logs": {"get"},
        "/api/jobs/{job_id}/output": {"get"},
        "/api/jobs/{job_id}/output/{file}": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
        for method in methods:
            assert (
                "200" in paths[path][method]["responses"]
                or "201" in (paths[path][method]["responses"])
            )
    assert "requestBody" in paths["/api/jobs"]["post"]
    one_of = paths["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert any("ContainerJobRequest" in s["$ref"] for s in one_of["oneOf"])


# --- input files (files by path) -----------------------------------------------------------


def upload_at(client, headers, path: str, data: bytes = b"a,b\n1,2\n") -> None:
    r = client.post(
        "/api/files/upload",
        data={"file": (io.BytesIO(data), path.rsplit("/", 1)[-1]), "path": path},
        content_type="multipart/form-data",
        headers=headers,
    )
    if r.status_code in (404, 405):
        pytest.skip("POST /api/files/upload is not there yet")
    assert r.status_code in (200, 201), r.json


@needs_files_by_path
def test_input_files_must_exist_in_the_owners_namespace(client, alice, bob):
    headers, _ = alice
    upload_at(client, headers, "/uploads/data.csv")
    upload_at(client, bob[0], "/uploads/bobs.csv")
    body = {
        **SEED_BODY,
        "input_files": [
            {"source": "/uploads/data.csv", "destination": "/input/data.csv"},
            {"source": "/uploads/missing.csv", "destination": "/input/m.csv"},
            {"source": "/uploads/bobs.csv", "destination": "/input/b.csv"},
        ],
    }
    r = client.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"
    assert r.json["error"]["details"]["missing"] == ["/uploads/missing.csv", "/uploads/bobs.csv"]
    body["input_files"] = body["input_files"][:1]
    r = client.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.json


def test_missing_input_file_is_400(client, alice):
    """Runs before files by path arrive too: nobody has a file at this path."""
    if not hasattr(files, "file_at_path"):
        pytest.skip("jobgate.files.file_at_path is not there yet")
    headers, _ = alice
    body = {**SEED_BODY, "input_files": [{"source": "/nope.csv", "destination": "/in/x.csv"}]}
    r = client.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 400 and r.json["error"]["details"]["missing"] == ["/nope.csv"]
    body["input_files"] = [{"source": "/uploads/../../etc/passwd", "destination": "/in/x"}]
    r = client.post("/api/jobs", json=body, headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"
    assert r.json["error"]["details"]["path"] == "/uploads/../../etc/passwd"


# --- reading -----------------------------------------------------------------------------------


def test_status_words_and_fields_in_each_state(
    client, alice, db, storage, tmp_path, details_column
):
    headers, user_id = alice
    now = dt.datetime.now(dt.UTC)
    pending = container_job(db, user_id)
    retrying = container_job(
        db, user_id, status="retrying", attempt=1, next_attempt_at=now + dt.timedelta(minutes=5)
    )
    running = container_job(
        db,
        user_id,
        status="running",
        attempt=1,
        started_at=now - dt.timedelta(seconds=10),
        progress_pct=45.5,
        details={
            "container_id": "c987654321",
            "resource_usage": {"cpu_time": 1.5, "memory_peak": 67108864, "network_io": 0},
        },
    )
    completed = container_job(
        db,
        user_id,
        status="completed",
        attempt=1,
        started_at=now - dt.timedelta(seconds=20),
        completed_at=now,
        progress_pct=None,
        details={
            "container_id": "cabc",
            "resource_usage": {"cpu_time": 2.0, "memory_peak": 1024, "network_io": 0},
            "exit_code": 0,
            "output_files": ["/output/report.json"],
        },
    )
    store_output(db, storage, tmp_path, completed, "output/report.json", b'{"ok": true}')
    failed = container_job(
        db,
        user_id,
        status="failed",
        attempt=3,
        error="exit code 2",
        completed_at=now,
        details={"exit_code": 2},
    )
    cancelled = container_job(db, user_id, status="cancelled", completed_at=now)

    def get(job):
        r = client.get(f"/api/jobs/{job['id']}", headers=headers)
        assert r.status_code == 200, r.json
        return r.json

    body = get(pending)
    assert body["status"] == "queued" and body["estimated_start"] is not None
    assert body["started_at"] is None and body["name"] == "job" and body["image"] == "busybox"
    body = get(retrying)
    assert body["status"] == "queued"
    assert _ts(body["estimated_start"]) >= now + dt.timedelta(minutes=4)  # its backoff
    body = get(running)
    assert body["status"] == "running" and body["progress"] == 45.5
    assert body["container_id"] == "c987654321" and body["estimated_start"] is None
    assert body["resource_usage"] == {"cpu_time": 1.5, "memory_peak": 67108864, "network_io": 0}
    # 10 s for 45.5 %: about 22 s in all
    expected = _ts(body["started_at"]) + dt.timedelta(seconds=10 * 100 / 45.5)
    assert abs((_ts(body["estimated_completion"]) - expected).total_seconds()) < 2
    body = get(completed)
    assert body["status"] == "completed" and body["progress"] == 100 and body["exit_code"] == 0
    assert body["estimated_completion"] == body["completed_at"]
    [output] = body["output_files"]
    assert output["name"] == "output/report.json" and output["path"] == "/output/report.json"
    assert output["size"] == 12 and output["mime_type"] == "application/json"
    assert output["download_url"] == f"/api/jobs/{completed['id']}/output/output/report.json"
    body = get(failed)
    assert body["status"] == "failed" and body["error"] == "exit code 2"
    assert body["exit_code"] == 2 and body["attempt"] == 3
    assert get(cancelled)["status"] == "cancelled"


def test_estimates_from_queue_depth_history_and_workers(db, alice):
    _, user_id = alice
    now = dt.datetime.now(dt.UTC)
    for seconds in (10, 20, 90):  # median 20 s
        container_job(
            db,
            user_id,
            status="completed",
            started_at=now - dt.timedelta(seconds=seconds),
            completed_at=now,
        )
    early = container_job(db, user_id, priority=8)
    container_job(db, user_id, priority=5)
    mine = container_job(db, user_id, priority=5)
    container_job(db, user_id, priority=2)  # behind it
    make_job(db, owner_id=user_id, kind="cache")  # another kind's queue
    with db.transaction() as conn:
        one_worker = estimates.estimate(conn, mine)
        stats = estimates.queue_stats(conn, kind="container")
        assert estimates.jobs_ahead(conn, kind="container", job_ids=[str(early["id"])]) == {
            str(early["id"]): 0
        }
        for i in range(2):
            workers.heartbeat(
                conn,
                worker_id=f"container-{i}",
                kind="container",
                hostname="h",
                pid=i,
                status="idle",
                current_job_id=None,
            )
        two_workers = estimates.estimate(conn, mine)
    assert stats.median_duration_s == pytest.approx(20, abs=0.5) and stats.workers == 1
    # two jobs ahead, 20 s each, one worker; then two workers
    assert (one_worker.start - stats.now).total_seconds() == pytest.approx(40, abs=1)
    assert (one_worker.completion - one_worker.start).total_seconds() == pytest.approx(20, abs=1)
    assert (two_workers.start - stats.now).total_seconds() == pytest.approx(20, abs=2)


def test_estimates_without_history_use_30_seconds(db, alice):
    _, user_id = alice
    container_job(db, user_id)
    mine = container_job(db, user_id)
    with db.transaction() as conn:
        stats = estimates.queue_stats(conn, kind="container")
        estimate = estimates.estimate(conn, mine)
    assert stats.median_duration_s == estimates.DEFAULT_DURATION_S
    assert (estimate.start - stats.now).total_seconds() == pytest.approx(30, abs=1)


def test_running_without_progress_finishes_after_the_median_never_before_now():
    now = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
    stats = estimates.QueueStats(now=now, median_duration_s=60, workers=1)
    job = {"status": "running", "started_at": now - dt.timedelta(seconds=10), "progress_pct": None}
    assert estimates.estimate_job(job, ahead=0, stats=stats).completion == now + dt.timedelta(
        seconds=50
    )
    late = {**job, "started_at": now - dt.timedelta(seconds=600)}
    assert estimates.estimate_job(late, ahead=0, stats=stats).completion == now


# --- listing -----------------------------------------------------------------------------------


def test_list_filters_pages_and_owners(client, admin, alice, bob, db):
    headers, alice_id = alice
    bob_headers, bob_id = bob
    old = container_job(db, alice_id, created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    queued = container_job(db, alice_id, status="retrying")
    running = container_job(db, alice_id, status="running", started_at=dt.datetime.now(dt.UTC))
    bobs = container_job(db, bob_id)
    make_job(db, owner_id=alice_id, kind="cache")  # not a container job: never listed

    r = client.get("/api/jobs", headers=headers)
    assert r.status_code == 200, r.json
    assert r.json["total"] == 3 and r.json["limit"] == 50 and r.json["offset"] == 0
    listed = [j["job_id"] for j in r.json["jobs"]]
    assert listed == [str(running["id"]), str(queued["id"]), str(old["id"])]  # newest first
    assert "output_files" not in r.json["jobs"][0]

    def ids(query: str, who=headers) -> list[str]:
        r = client.get(f"/api/jobs?{query}", headers=who)
        assert r.status_code == 200, r.json
        return [j["job_id"] for j in r.json["jobs"]]

    assert ids("status=queued") == [str(queued["id"]), str(old["id"])]
    assert ids("status=running") == [str(running["id"])]
    assert ids("status=completed") == []
    assert ids("created_since=2024-06-01T00:00:00Z") == [str(running["id"]), str(queued["id"])]
    assert ids("created_since=2024-06-01T00:00:00") == [str(running["id"]), str(queued["id"])]
    assert ids("limit=1&offset=1") == [str(queued["id"])]
    assert ids("user=alice") == [str(running["id"]), str(queued["id"]), str(old["id"])]
    r = client.get("/api/jobs?user=bob", headers=headers)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert ids("", who=bob_headers) == [str(bobs["id"])]
    # admins see everyone's and may name a user; an unknown user has no jobs
    assert len(ids("", who=admin)) == 4
    assert ids("user=bob", who=admin) == [str(bobs["id"])]
    assert ids("user=nobody", who=admin) == []
    for bad in ("status=pending", "limit=0", "limit=201", "offset=-1", "created_since=yesterday"):
        r = client.get(f"/api/jobs?{bad}", headers=headers)
        assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST", bad


# --- operations --------------------------------------------------------------------------------


def test_cancel_and_retry(client, alice, db):
    headers, user_id = alice
    job = container_job(db, user_id)
    r = client.post(f"/api/jobs/{job['id']}/retry", headers=headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    r = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    r = client.post(f"/api/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 409
    r = client.post(f"/api/jobs/{job['id']}/retry", headers=headers)
    assert r.status_code == 200 and r.json["status"] == "queued" and r.json["attempt"] == 0
    failed = container_job(db, user_id, status="failed", attempt=3, error="exit code 1")
    r = client.post(f"/api/jobs/{failed['id']}/retry", headers=headers)
    assert r.status_code == 200 and r.json["status"] == "queued" and r.json["error"] is None
    running = container_job(db, user_id, status="running", started_at=dt.datetime.now(dt.UTC))
    r = client.post(f"/api/jobs/{running['id']}/cancel", headers=headers)
    assert r.status_code == 200 and r.json["status"] == "running"  # the worker stops it
    with db.transaction() as conn:
        row = jobgate_db.fetch_one(conn, "SELECT * FROM jobs WHERE id = %s", (running["id"],))
    assert row["cancel_requested"] is True


def test_logs(client, alice, db):
    headers, user_id = alice
    job = container_job(db, user_id)
    with db.transaction() as conn:
        for line in ("attempt 1 started", "hello from the container", "exit code 0"):
            job_logs.add_log(conn, job_id=str(job["id"]), level="info", message=line)
    r = client.get(f"/api/jobs/{job['id']}/logs", headers=headers)
    assert r.status_code == 200 and r.json["job_id"] == str(job["id"])
    assert [line["message"] for line in r.json["logs"]][1] == "hello from the container"
    first = r.json["logs"][0]["id"]
    r = client.get(f"/api/jobs/{job['id']}/logs?after_id={first}&limit=1", headers=headers)
    assert [line["message"] for line in r.json["logs"]] == ["hello from the container"]


def test_outputs_list_and_download_with_range_and_etag(client, alice, db, storage, tmp_path):
    headers, user_id = alice
    job = container_job(db, user_id, status="completed", completed_at=dt.datetime.now(dt.UTC))
    store_output(db, storage, tmp_path, job, "output/report.json", b'{"old": 1}')
    store_output(db, storage, tmp_path, job, "output/report.json", b'{"result": 42}')  # retried
    store_output(db, storage, tmp_path, job, "output/data/a b.json", b"[]")
    r = client.get(f"/api/jobs/{job['id']}/output", headers=headers)
    assert r.status_code == 200 and r.json["total"] == 2 and r.json["status"] == "completed"
    by_name = {f["name"]: f for f in r.json["files"]}
    report = by_name["output/report.json"]
    assert report["size"] == 14 and report["mime_type"] == "application/json"
    assert report["created_at"].endswith("Z")
    assert by_name["output/data/a b.json"]["download_url"].endswith(
        "/output/output/data/a%20b.json"
    )

    r = client.get(report["download_url"], headers=headers)
    assert r.status_code == 200 and r.data == b'{"result": 42}'
    assert r.headers["Content-Disposition"] == "attachment; filename=report.json"
    etag = r.headers["ETag"]
    r = client.get(report["download_url"], headers={**headers, "Range": "bytes=0-9"})
    assert r.status_code == 206 and r.data == b'{"result":'
    r = client.get(report["download_url"], headers={**headers, "If-None-Match": etag})
    assert r.status_code == 304
    r = client.get(by_name["output/data/a b.json"]["download_url"], headers=headers)
    assert r.status_code == 200 and r.data == b"[]"
    r = client.get(f"/api/jobs/{job['id']}/output/output/nope.json", headers=headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"


def test_other_users_jobs_and_other_kinds_are_404(client, alice, bob, admin, db, storage, tmp_path):
    headers, alice_id = alice
    _, bob_id = bob
    bobs = container_job(db, bob_id, status="completed", completed_at=dt.datetime.now(dt.UTC))
    store_output(db, storage, tmp_path, bobs, "output/x.json", b"{}")
    convert = make_job(db, owner_id=alice_id, kind="convert", params={"input_file": "x"})
    for job in (bobs, convert):
        for method, path in (
            ("get", ""),
            ("post", "/cancel"),
            ("post", "/retry"),
            ("get", "/logs"),
            ("get", "/output"),
            ("get", "/output/output/x.json"),
        ):
            r = getattr(client, method)(f"/api/jobs/{job['id']}{path}", headers=headers)
            assert r.status_code == 404, (job["kind"], path, r.status_code)
            assert r.json["error"]["code"] == "NOT_FOUND" and r.json["error"]["request_id"]
    assert client.get(f"/api/jobs/{bobs['id']}", headers=admin).status_code == 200
    assert client.get(f"/api/jobs/{convert['id']}", headers=admin).status_code == 404
    assert client.get(f"/api/jobs/{uuid.uuid4()}", headers=headers).status_code == 404
    r = client.get("/api/jobs/job_123456789", headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"
    assert client.get(f"/api/jobs/{bobs['id']}", headers=DEMO).status_code == 200  # admin key
