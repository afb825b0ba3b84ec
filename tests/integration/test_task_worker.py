"""The task worker in-process with its real handler processes, PostgreSQL and RabbitMQ; tasks
submitted through the gateway's `POST /api/v1/jobs` (`"kind": "task"`): results as the
handler returned them, timeouts, crashing handlers, retries, cancel and hand-back of a
running handler, priorities (also changed while queued), the example package's handlers,
the 400s of submission and of task schedules (the kind's plan), and a failed task run again
with new fields by seed 004's PUT."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from jobgate import schedules
from jobgate.jobs import attempts
from jobgate_gateway import create_app
from tests.factories.jobs import make_job, set_job_columns, wait_for_job
from tests.factories.schedules import make_schedule
from tests.factories.users import make_user
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


def seed_task(client: FlaskClient, **body: Any) -> dict[str, Any]:
    """A task through seed 004's route (no retries unless asked): its `data`."""
    r = client.post("/api/v1/tasks", json={"retry_count": 0, **body}, headers=DEMO)
    assert r.status_code == 201, r.json
    return r.json["data"]


def put_task(client: FlaskClient, task_id: str, **body: Any) -> dict[str, Any]:
    r = client.put(f"/api/v1/tasks/{task_id}", json=body, headers=DEMO)
    assert r.status_code == 200, r.json
    return r.json["data"]


def test_a_changed_priority_counts_for_a_queued_task(client, db, start_worker):
    """The old message of a task whose priority changed while queued is dropped: a high
    task lowered to low runs after the lows queued before it, a low raised to high first."""
    lows = [seed_task(client, name=f"low-{i}", priority="low") for i in range(3)]
    raised = seed_task(client, name="raised", priority="low")
    lowered = seed_task(client, name="lowered", priority="high")
    assert put_task(client, raised["id"], priority="high")["priority"] == "high"
    assert put_task(client, lowered["id"], priority="low")["priority"] == "low"
    start_worker("task", task_concurrency=1)  # one at a time, from a queue already full
    tasks = [*lows, raised, lowered]
    done = {t["id"]: wait_for_job(db, t["id"], FINISHED, timeout=30) for t in tasks}
    assert all(row["status"] == "completed" for row in done.values())
    assert all(row["attempt"] == 1 for row in done.values())  # no message ran one twice
    started = {job_id: row["started_at"] for job_id, row in done.items()}
    order = sorted(started, key=started.__getitem__)
    assert order[0] == raised["id"] and order[-1] == lowered["id"], started


def test_a_pending_job_is_claimed_only_by_a_message_of_its_priority(db):
    owner = make_user(db)
    job = make_job(db, owner_id=owner["id"], kind="task", params={"name": "t"}, priority=5)
    job_id = str(job["id"])

    def claim(priority: int | None) -> dict[str, Any] | None:
        with db.transaction() as conn:
            return attempts.claim_job(
                conn, job_id=job_id, worker_id="w", lease_s=5, priority=priority
            )

    assert claim(8) is None
    with db.transaction() as conn:  # nothing to settle: the job waits for its own message
        assert attempts.settle_unclaimable(conn, job_id=job_id) is None
    assert claim(5)["status"] == "running"
    # A dead worker's job and a due retry go to any message (redeliveries keep theirs).
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    set_job_columns(db, job, lease_expires_at=past)
    assert claim(8)["attempt"] == 2
    set_job_columns(db, job, status="retrying", worker_id=None, next_attempt_at=past)
    assert claim(2)["attempt"] == 3
    set_job_columns(db, job, status="pending", attempt=0, worker_id=None)
    assert claim(None)["status"] == "running"  # a message without a priority: any job


def test_a_failed_task_put_back_to_pending_runs_with_its_new_fields(client, db, start_worker):
    """Retried and changed in one transaction: an idle worker cannot take the task with its
    old fields between the two (it would run `example.fail` again and the PUT be a 409).
    The run's `started_at` and `duration` are the new run's."""
    start_worker("task", task_concurrency=4)
    made = [
        seed_task(client, name=f"t{i}", handler="example.fail", payload={"message": "first"})
        for i in range(5)
    ]
    first = {t["id"]: wait_for_job(db, t["id"], FINISHED, timeout=20) for t in made}
    assert all(row["status"] == "failed" for row in first.values())
    time.sleep(0.5)
    for t in made:
        data = put_task(client, t["id"], status="pending", handler="echo", payload={"run": 2})
        assert (data["status"], data["handler"], data["payload"]) == ("pending", "echo", {"run": 2})
    for t in made:
        done = wait_for_job(db, t["id"], FINISHED, timeout=20)
        assert (done["status"], done["result"], done["attempt"]) == ("completed", {"run": 2}, 1)
        before = first[t["id"]]
        assert done["started_at"] > before["completed_at"] + dt.timedelta(seconds=0.4)
        task = client.get(f"/api/v1/tasks/{t['id']}", headers=DEMO).json["data"]
        # The new run's own time (its started_at is after the first run ended), however
        # long a loaded machine makes it: not the time since the first run started.
        this_run = (done["completed_at"] - done["started_at"]).total_seconds()
        assert task["duration"] == pytest.approx(this_run, abs=0.002) and task["error"] is None


# --- schedules of tasks: the kind's plan ---------------------------------------------------


def test_a_task_schedule_is_checked_as_a_task(gateway_settings):
    """`POST /api/v1/schedules` plans a task as its submission does (the schedule's `name`
    is its tasks' name too): an unknown handler or a payload over the limit is a 400."""
    app = create_app(gateway_settings.replace(task_max_payload_bytes=64))
    try:
        client = app.test_client()
        body = {"name": "nightly", "kind": "task", "interval_minutes": 60}
        r = client.post("/api/v1/schedules", json={**body, "handler": "nope"}, headers=DEMO)
        assert r.status_code == 400 and r.json["error"]["message"] == "Unknown handler 'nope'"
        assert r.json["error"]["details"]["handler"] == "nope"
        assert "echo" in r.json["error"]["details"]["available"]
        big = {"data": "x" * 100}
        r = client.post("/api/v1/schedules", json={**body, "payload": big}, headers=DEMO)
        assert r.status_code == 400 and r.json["error"]["details"]["max_bytes"] == 64
        r = client.post(
            "/api/v1/schedules", json={**body, "handler": "sleep", "payload": {}}, headers=DEMO
        )
        assert r.status_code == 201, r.json
        assert r.json["params"]["name"] == "nightly" and r.json["params"]["handler"] == "sleep"
    finally:
        app.extensions["jobgate"].publisher.close()


def test_a_scheduled_task_run_resolves_its_handler_and_fails_an_unknown_one(db, settings):
    owner = make_user(db)
    by_name = make_schedule(
        db, owner_id=owner["id"], kind="task", params={"name": "example.add"}, name="by name"
    )
    default = make_schedule(
        db, owner_id=owner["id"], kind="task", params={"name": "x"}, name="by default"
    )
    gone = make_schedule(  # stored without the plan (a handler uninstalled since)
        db, owner_id=owner["id"], kind="task", params={"name": "x", "handler": "nope"}, name="gone"
    )
    with db.transaction() as conn:
        runs = {
            str(r.schedule_id): r.job
            for r in schedules.fire_due(conn, settings=settings, app_id="test")
        }
    assert runs[str(by_name["id"])]["params"]["handler"] == "example.add"
    assert runs[str(default["id"])]["params"]["handler"] == settings.task_default_handler
    failed = runs[str(gone["id"])]
    assert failed["status"] == "failed" and "Unknown handler 'nope'" in failed["error"]
