"""The task worker in-process with its real handler processes, PostgreSQL and RabbitMQ; tasks
submitted through the gateway's `POST /api/v1/jobs` (`"kind": "task"`): results as the
handler returned them, timeouts, crashing handlers, retries, cancel and hand-back of a
running handler, priorities, the example package's handlers, and the 400s of submission."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from jobgate_gateway import create_app
from tests.factories.jobs import wait_for_job
from tests.integration.conftest import DEMO

FINISHED = {"completed", "failed", "cancelled"}


def submit(client: FlaskClient, **body: Any) -> dict[str, Any]:
    """A task through the canonical route; one attempt and quick retries unless asked."""
    body = {"kind": "task", "max_attempts": 1, "backoff": "fixed", "backoff_seconds": 0, **body}
    r = client.post("/api/v1/jobs", json=body, headers=DEMO)
    assert r.status_code == 201, r.json
    return r.json


def job_of(client: FlaskClient, job_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/jobs/{job_id}", headers=DEMO)
    assert r.status_code == 200, r.json
    return r.json["job"]


def logs_of(client: FlaskClient, job_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/jobs/{job_id}/logs", headers=DEMO).json["logs"]


def test_echo_completes_with_the_payload_as_its_result(client, db, start_worker):
    start_worker("task", task_concurrency=2)
    payload = {"file_path": "/data/input.csv", "rows": [1, 2, {"x": None}]}
    # Seed 004's example: no handler of that name, so the default (echo) runs it.
    job = submit(client, name="Process Data", description="Process CSV file", payload=payload)
    assert job["params"]["handler"] == "echo" and job["name"] == "Process Data"
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]
    got = job_of(client, job["id"])
    assert got["result"] == payload and got["status"] == "completed"
    messages = [line["message"] for line in logs_of(client, job["id"])]
    assert messages[0] == "task 'Process Data' started: handler 'echo' (attempt 1)"
    assert messages[-1].startswith("task 'Process Data' completed in ")


def test_a_user_handler_from_the_example_package(client, db, start_worker):
    start_worker("task")
    explicit = submit(client, name="Sum", handler="example.add", payload={"numbers": [1, 2, 3.5]})
    by_name = submit(client, name="example.add", payload={"numbers": [10, 20]})
    assert by_name["params"]["handler"] == "example.add"
    for job, expected in ((explicit, 6.5), (by_name, 30)):
        done = wait_for_job(db, job["id"], FINISHED)
        assert done["status"] == "completed", done["error"]
        assert job_of(client, job["id"])["result"] == expected  # a bare number, as returned


def test_unknown_explicit_handler_is_a_400_listing_the_registered_ones(client):
    r = client.post(
        "/api/v1/jobs", json={"kind": "task", "name": "x", "handler": "nope.nothing"}, headers=DEMO
    )
    assert r.status_code == 400
    error = r.json["error"]
    assert (
        error["code"] == "INVALID_REQUEST" and error["message"] == "Unknown handler 'nope.nothing'"
    )
    assert error["details"]["handler"] == "nope.nothing"
    assert {"echo", "sleep", "http", "example.add", "example.fail"} <= set(
        error["details"]["available"]
    )
    r = client.post(
        "/api/v1/jobs", json={"kind": "task", "name": "x", "handler": "no spaces"}, headers=DEMO
    )
    assert r.status_code == 400 and "handler" in r.json["error"]["details"]["fields"]


def test_a_payload_over_the_limit_is_a_400(gateway_settings):
    app = create_app(gateway_settings.replace(task_max_payload_bytes=64))
    try:
        client = app.test_client()
        body = {"kind": "task", "name": "big", "payload": {"data": "x" * 100}}
        r = client.post("/api/v1/jobs", json=body, headers=DEMO)
        assert r.status_code == 400
        assert r.json["error"]["details"]["max_bytes"] == 64
        body["payload"] = {"data": "x" * 10}
        assert client.post("/api/v1/jobs", json=body, headers=DEMO).status_code == 201
    finally:
        app.extensions["jobgate"].publisher.close()


def test_an_exception_fails_the_task_with_its_traceback_in_the_log(client, db, start_worker):
    start_worker("task")
    job = submit(client, name="boom", handler="example.fail", payload={"message": "it broke"})
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "failed" and done["error"] == "RuntimeError: it broke"
    errors = [line["message"] for line in logs_of(client, job["id"]) if line["level"] == "error"]
    traceback = next(m for m in errors if "Traceback" in m)
    assert traceback.startswith("RuntimeError: it broke\nTraceback (most recent call last):")
    assert "jobgate_example_tasks" in traceback and traceback.endswith("RuntimeError: it broke")


def test_retry_count_is_honoured(client, db, start_worker):
    start_worker("task")
    job = submit(client, name="flaky", handler="example.fail", max_attempts=3)
    done = wait_for_job(db, job["id"], FINISHED, timeout=30)
    assert done["status"] == "failed" and done["attempt"] == 3
    logs = logs_of(client, job["id"])
    starts = [line for line in logs if line["message"].startswith("task 'flaky' started")]
    assert [line["message"][-11:] for line in starts] == [
        "(attempt 1)",
        "(attempt 2)",
        "(attempt 3)",
    ]
    retries = [line for line in logs if line["level"] == "warning"]
    assert len(retries) == 2 and "attempt 1 failed: RuntimeError" in retries[0]["message"]


def test_timeout_kills_the_handler_and_the_worker_keeps_serving(client, db, start_worker):
    start_worker("task", task_concurrency=1)
    slow = submit(client, name="slow", handler="sleep", payload={"seconds": 60}, timeout=1)
    done = wait_for_job(db, slow["id"], FINISHED, timeout=20)
    assert done["status"] == "failed" and done["error"] == "timed out after 1 s"
    # One handler process: the next task runs only if the sleeping one was killed.
    after = submit(client, name="after", payload={"n": 1})
    done = wait_for_job(db, after["id"], FINISHED, timeout=20)
    assert done["status"] == "completed" and done["result"] == {"n": 1}


def test_a_timed_out_attempt_is_retried(client, db, start_worker):
    start_worker("task")
    job = submit(
        client, name="slow", handler="sleep", payload={"seconds": 60}, timeout=1, max_attempts=2
    )
    done = wait_for_job(db, job["id"], FINISHED, timeout=20)
    assert (done["status"], done["attempt"], done["error"]) == ("failed", 2, "timed out after 1 s")


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ({"how": "exit", "code": 3}, "handler process died (exit code 3)"),
        ({"how": "segfault"}, "handler process died (exit code -11: SIGSEGV)"),
    ],
)
def test_a_crashing_handler_fails_its_task_and_the_next_one_runs(
    client, db, start_worker, how, error
):
    start_worker("task", task_concurrency=1)
    crash = submit(client, name="crash", handler="example.crash", payload=how)
    after = submit(client, name="after", payload={"still": "here"})
    done = wait_for_job(db, crash["id"], FINISHED, timeout=20)
    assert done["status"] == "failed" and done["error"] == error
    done = wait_for_job(db, after["id"], FINISHED, timeout=20)
    assert done["status"] == "completed" and done["result"] == {"still": "here"}


def test_cancel_of_a_running_sleep_kills_it(client, db, start_worker):
    start_worker("task", task_concurrency=1)
    job = submit(client, name="nap", handler="sleep", payload={"seconds": 30})
    wait_for_job(db, job["id"], {"running"}, timeout=20)
    time.sleep(0.3)  # the handler process is sleeping now
    asked = time.monotonic()
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=DEMO)
    assert r.status_code == 200, r.json
    done = wait_for_job(db, job["id"], FINISHED, timeout=20)
    took = time.monotonic() - asked
    assert done["status"] == "cancelled" and done["result"] is None
    assert took < 10, f"cancel took {took:.1f}s; the sleep would have ended at 30 s"
    after = submit(client, name="after")
    assert wait_for_job(db, after["id"], FINISHED, timeout=20)["status"] == "completed"


def test_hand_back_on_shutdown_kills_the_handler_and_keeps_the_attempt(client, db, start_worker):
    worker = start_worker("task", task_concurrency=1)
    job = submit(client, name="nap", handler="sleep", payload={"seconds": 30})
    wait_for_job(db, job["id"], {"running"}, timeout=20)
    worker.request_stop()  # grace period 2 s (worker_settings), then hand back
    done = wait_for_job(db, job["id"], {"pending"}, timeout=20)
    assert done["attempt"] == 0 and done["worker_id"] is None


def test_a_result_over_the_limit_fails_without_retries(client, db, start_worker):
    start_worker("task", task_max_result_bytes=50)
    job = submit(client, name="big", payload={"data": "x" * 100}, max_attempts=3)
    done = wait_for_job(db, job["id"], FINISHED, timeout=20)
    assert done["status"] == "failed" and done["attempt"] == 1
    assert "TASK_MAX_RESULT_BYTES is 50" in done["error"]


def test_http_to_a_host_not_allowed_fails_without_retries(client, db, start_worker):
    start_worker("task", task_http_allowed_hosts=("api.example.com",))
    job = submit(
        client, name="call", handler="http", payload={"url": "http://127.0.0.1:9/"}, max_attempts=3
    )
    done = wait_for_job(db, job["id"], FINISHED, timeout=20)
    assert done["status"] == "failed" and done["attempt"] == 1
    assert done["error"] == "host '127.0.0.1' is not in TASK_HTTP_ALLOWED_HOSTS"


def test_high_priority_runs_before_queued_low_ones(client, db, start_worker):
    lows = [submit(client, name=f"low-{i}", priority=2) for i in range(4)]
    high = submit(client, name="high", priority=8)
    start_worker("task", task_concurrency=1)  # one at a time, from a queue already full
    done = {j["id"]: wait_for_job(db, j["id"], FINISHED, timeout=20) for j in [*lows, high]}
    assert all(row["status"] == "completed" for row in done.values())
    started: dict[str, dt.datetime] = {job_id: row["started_at"] for job_id, row in done.items()}
    assert all(started[high["id"]] < started[low["id"]] for low in lows), started
