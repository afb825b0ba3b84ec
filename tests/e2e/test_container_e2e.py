"""Container jobs and the containers API through the real processes: the gunicorn gateway and
auth-service, `jobgate-worker container` processes holding the run's own Podman engine
(`docker_host`, tests/engine.py), PostgreSQL and RabbitMQ, driven over HTTP with seed 003's
routes (`/api/files`, `/api/jobs`, `/api/containers`, `/api/health`). What the in-process
tests (tests/integration/test_container_worker.py, test_seed003_containers.py) cannot show:
a container worker killed with SIGKILL mid-job, and the containers API answered by a worker
process over RabbitMQ RPC (and a 503 when none runs)."""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import pytest
import requests

from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e
RPC_TIMEOUT_S = 2.0
DONE = {"completed", "failed", "cancelled"}
CSV = b"name,value\nalpha,3\nbeta,4\ngamma,5\n"


@pytest.fixture
def engine(docker_host):
    """The docker SDK on the engine the workers use: what is really there."""
    client = docker.DockerClient(base_url=docker_host, version="1.41", timeout=30)
    yield client
    client.close()


@pytest.fixture
def container_stack(make_stack, docker_host, engine):
    """Gateway and auth-service whose workers reach the test engine; tests start the
    container workers they need (`stack.start_worker("container")`). Whatever container a
    test's jobs or containers leave behind is removed at the end (only ours: by job id or
    by the unique container names the tests use)."""
    stack = make_stack(DOCKER_HOST=docker_host, CONTAINER_RPC_TIMEOUT_S=str(RPC_TIMEOUT_S))
    stack.job_ids, stack.names = [], []
    yield stack
    labels = [f"jobgate.job={j}" for j in stack.job_ids]
    labels += [f"jobgate.name={n}" for n in stack.names]
    for label in labels:
        for leftover in engine.containers.list(all=True, filters={"label": label}):
            leftover.remove(force=True)


def call(stack, headers, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.url}{path}", headers=headers, timeout=30, **kwargs)


def upload(stack, headers, path: str, data: bytes, permissions: str = "644") -> dict[str, Any]:
    r = call(
        stack,
        headers,
        "POST",
        "/api/files/upload",
        files={"file": ("data.csv", data, "text/csv")},
        data={"path": path, "permissions": permissions},
    )
    assert r.status_code == 201, r.text
    return r.json()


def submit(stack, headers, **body: Any) -> dict[str, Any]:
    r = call(stack, headers, "POST", "/api/jobs", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    stack.job_ids.append(created["job_id"])
    return created


def job_of(stack, headers, job_id: str) -> dict[str, Any]:
    r = call(stack, headers, "GET", f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def log_lines(stack, headers, job_id: str) -> list[tuple[str, str]]:
    r = call(stack, headers, "GET", f"/api/jobs/{job_id}/logs")
    assert r.status_code == 200, r.text
    return [(e["level"], e["message"]) for e in r.json()["logs"]]


def wait_job(
    stack,
    headers,
    job_id: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = job_of(stack, headers, job_id)
        if until(job):
            return job
        time.sleep(interval)
    raise AssertionError(f"job {job_id}: {job}")


def wait_log(stack, headers, job_id: str, line: tuple[str, str], timeout: float = 20.0) -> None:
    """Until the container printed `line` (so it is running, not only created)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if line in log_lines(stack, headers, job_id):
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: no {line} in {log_lines(stack, headers, job_id)}")


def job_containers(engine, job_id: str) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"jobgate.job={job_id}"})


def gone(engine, container_id: str) -> bool:
    try:
        engine.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


# --- seed 003's user flow -----------------------------------------------------------------------


def test_input_file_in_container_job_output_file_out(container_stack):
    """Upload by path, submit the seed's body, watch it run (progress, logs, container,
    usage), list and download the output: the bytes the command derived from the input."""
    stack = container_stack
    stack.start_worker("container")
    token = login(stack)
    info = upload(stack, token, "/uploads/data.csv", CSV)
    assert info["path"] == "/uploads/data.csv" and info["size"] == len(CSV)
    assert info["permissions"] == "644" and info["etag"] == hashlib.sha256(CSV).hexdigest()

    # Rows and the sum of the second column, as JSON, into $OUTPUT_DIR; a progress line and
    # a pause first, so the job is seen running at 50 %.
    script = (
        'echo "rows: $(($(wc -l < "$INPUT_FILE") - 1))"; echo ::progress::50; sleep 1.5;'
        " awk -F, 'NR > 1 { n++; s += $2 } END"
        ' { printf "{\\"rows\\": %d, \\"total\\": %d, \\"label\\": \\"%s\\"}\\n",'
        ' n, s, ENVIRON["LABEL"] }\' "$INPUT_FILE" > "$OUTPUT_DIR/result.json";'
        " echo to-stderr >&2"
    )
    created = submit(
        stack,
        token,
        name="data-processing-job",
        image="busybox",
        command=sh(script),
        environment={"INPUT_FILE": "/input/data.csv", "OUTPUT_DIR": "/output", "LABEL": "e2e"},
        input_files=[{"source": "/uploads/data.csv", "destination": "/input/data.csv"}],
        output_patterns=["/output/*.json", "/output/report.pdf"],
        resources={"cpu_limit": "1.0", "memory_limit": "64m", "timeout": "60s"},
        priority="normal",
        retry_policy={"max_attempts": 3, "backoff": "exponential"},
    )
    assert set(created) == {"job_id", "status", "created_at", "estimated_start"}
    assert created["status"] == "queued" and created["created_at"]
    assert created["estimated_start"] is not None
    job_id = created["job_id"]
    expected = b'{"rows": 3, "total": 12, "label": "e2e"}\n'

    running = wait_job(
        stack, token, job_id, lambda j: j["status"] == "running" and j["progress"] == 50
    )
    assert running["started_at"] and running["container_id"]
    assert running["estimated_completion"] is not None and running["output_files"] == []
    # The log is readable while the container runs; the progress line is not in it.
    wait_log(stack, token, job_id, ("stdout", "rows: 3"))
    assert all("::progress::" not in message for _, message in log_lines(stack, token, job_id))

    done = wait_job(stack, token, job_id, lambda j: j["status"] in DONE)
    assert done["status"] == "completed", done["error"]
    assert done["progress"] == 100 and done["exit_code"] == 0 and done["attempt"] == 1
    assert done["name"] == "data-processing-job" and done["image"] == "busybox"
    assert done["priority"] == "normal"
    assert done["retry_policy"] == {"max_attempts": 3, "backoff": "exponential"}
    assert done["started_at"] == running["started_at"] and done["completed_at"]
    assert done["container_id"] == running["container_id"]
    assert set(done["resource_usage"]) == {"cpu_time", "memory_peak", "network_io"}
    assert done["resource_usage"]["network_io"] == 0  # network none
    [output] = done["output_files"]
    assert output["name"] == "output/result.json" and output["path"] == "/output/result.json"
    assert output["size"] == len(expected) and output["mime_type"] == "application/json"
    assert output["etag"] == hashlib.sha256(expected).hexdigest()

    lines = log_lines(stack, token, job_id)
    assert ("stdout", "rows: 3") in lines and ("stderr", "to-stderr") in lines

    r = call(stack, token, "GET", f"/api/jobs/{job_id}/output")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["status"] == "completed" and listed["total"] == 1
    assert listed["files"] == [output]
    assert output["download_url"] == f"/api/jobs/{job_id}/output/output/result.json"
    r = call(stack, token, "GET", output["download_url"])
    assert r.status_code == 200 and r.content == expected
    assert json.loads(r.content) == {"rows": 3, "total": 12, "label": "e2e"}

    r = call(stack, token, "GET", "/api/jobs", params={"status": "completed"})
    assert job_id in [j["job_id"] for j in r.json()["jobs"]]


# --- kill -9 and cancel -----------------------------------------------------------------------


@pytest.mark.slow
def test_worker_killed_mid_job_leaves_no_container_and_the_job_completes(container_stack, engine):
    stack = container_stack
    worker = stack.start_worker("container")
    token = login(stack)
    job_id = submit(
        stack,
        token,
        name="killed-mid-job",
        image="busybox",
        command=sh("echo started; sleep 3; echo done > /output/done.txt"),
        output_patterns=["/output/done.txt"],
        resources={"timeout": "60s"},
        retry_policy={"max_attempts": 3, "backoff": "fixed"},
    )["job_id"]
    wait_log(stack, token, job_id, ("stdout", "started"))
    first = job_of(stack, token, job_id)
    assert first["status"] == "running" and first["attempt"] == 1
    old_cid = first["container_id"]
    assert old_cid

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # The dead worker could not remove its container: it is still on the engine.
    assert not gone(engine, old_cid)
    [left] = job_containers(engine, job_id)
    assert left.id == old_cid and left.labels["jobgate.attempt"] == "1"

    stack.start_worker("container", name="worker-container-2")
    done = wait_job(stack, token, job_id, lambda j: j["status"] in DONE, timeout=30)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2 and done["exit_code"] == 0
    assert done["container_id"] and done["container_id"] != old_cid
    [output] = done["output_files"]
    assert output["name"] == "output/done.txt"
    r = call(stack, token, "GET", output["download_url"])
    assert r.status_code == 200 and r.content == b"done\n"
    # The new worker's housekeeping removed the orphan once the reaper had re-queued its
    # job, and the new attempt removed its own: nothing of this job is left on the engine.
    assert gone(engine, old_cid)
    assert job_containers(engine, job_id) == []
    assert [m for _, m in log_lines(stack, token, job_id)].count("started") == 2


@pytest.mark.slow
def test_cancel_kills_the_container_within_a_second(container_stack, engine):
    stack = container_stack
    stack.start_worker("container")
    token = login(stack)
    job_id = submit(
        stack,
        token,
        name="cancelled",
        image="busybox",
        command=sh("echo started; sleep 30"),
        retry_policy={"max_attempts": 3},
    )["job_id"]
    wait_log(stack, token, job_id, ("stdout", "started"))
    cid = job_of(stack, token, job_id)["container_id"]
    assert cid and not gone(engine, cid)

    asked = time.monotonic()
    r = call(stack, token, "POST", f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    done = wait_job(stack, token, job_id, lambda j: j["status"] in DONE, timeout=10, interval=0.05)
    took = time.monotonic() - asked
    assert done["status"] == "cancelled", done
    assert took < 1.5, took
    assert done["attempt"] == 1 and done["progress"] < 100 and done["output_files"] == []
    # The worker removes the container before it records the cancellation.
    assert gone(engine, cid) and job_containers(engine, job_id) == []
    assert ("info", "container killed (cancelled)") in log_lines(stack, token, job_id)
    # A finished job cannot be cancelled again.
    assert call(stack, token, "POST", f"/api/jobs/{job_id}/cancel").status_code == 409


# --- the containers API over RPC ------------------------------------------------------------


def health(stack, headers) -> dict[str, Any]:
    r = call(stack, headers, "GET", "/api/health")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_containers_api_through_a_worker_process_and_503_without_one(container_stack, engine):
    stack = container_stack
    token = login(stack)

    # No container worker: nobody answers the RPC queue.
    started = time.monotonic()
    r = call(stack, token, "GET", "/api/containers")
    took = time.monotonic() - started
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE", r.json()
    assert RPC_TIMEOUT_S - 0.2 <= took < RPC_TIMEOUT_S + 2, took
    body = health(stack, token)
    assert body["checks"]["docker"] == "unhealthy" and body["checks"]["database"] == "healthy"
    assert body["status"] == "degraded"

    stack.start_worker("container")
    deadline = time.monotonic() + 20
    while (r := call(stack, token, "GET", "/api/containers")).status_code == 503:
        assert time.monotonic() < deadline, r.text
    assert r.status_code == 200, r.text
    assert health(stack, token)["checks"]["docker"] == "healthy"

    name = f"e2e-{secrets.token_hex(4)}"
    stack.names.append(name)
    r = call(
        stack,
        token,
        "POST",
        "/api/containers",
        json={
            "name": name,
            "image": "busybox",
            "command": sh(
                "trap 'exit 0' TERM; echo hello-from-$GREETING; while true; do sleep 0.2; done"
            ),
            "environment": {"GREETING": "e2e"},
            "resources": {"cpu_limit": "0.5", "memory_limit": "64m"},
            "restart_policy": "no",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    cid = created["id"]
    assert created["name"] == name and created["image"] == "busybox"
    assert created["status"] == "stopped" and created["ports"] == []
    on_engine = engine.containers.get(cid)
    assert on_engine.labels["jobgate.name"] == name
    assert on_engine.attrs["HostConfig"]["NetworkMode"] == "none"

    r = call(stack, token, "POST", f"/api/containers/{cid}/start")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    r = call(stack, token, "GET", f"/api/containers/{cid}")
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    listed = call(stack, token, "GET", "/api/containers", params={"status": "running"}).json()
    assert cid in [c["id"] for c in listed["containers"]]

    deadline = time.monotonic() + 10
    while "hello-from-e2e" not in (
        logs := call(stack, token, "GET", f"/api/containers/{cid}/logs").text
    ):
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)
    assert logs == "hello-from-e2e\n"

    r = call(stack, token, "GET", f"/api/containers/{cid}/stats")
    assert r.status_code == 200, r.text
    stats = r.json()
    assert set(stats) == {
        "cpu_usage",
        "memory_usage",
        "memory_limit",
        "network_rx",
        "network_tx",
        "block_read",
        "block_write",
        "timestamp",
    }
    assert stats["memory_limit"] == 64 * 1024 * 1024 and stats["memory_usage"] > 0
    assert stats["network_rx"] == stats["network_tx"] == 0

    r = call(stack, token, "POST", f"/api/containers/{cid}/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped", r.text
    assert engine.containers.get(cid).status == "exited"

    r = call(stack, token, "DELETE", f"/api/containers/{cid}")
    assert r.status_code == 204, r.text
    assert gone(engine, cid)
    r = call(stack, token, "GET", f"/api/containers/{cid}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "CONTAINER_NOT_FOUND", r.text
